"""The one error type the user sees: a single line naming the problem and the file or field."""


class PhonetuiError(Exception):
    """A problem with user input (files, presets, hyperparameters); printed as one line."""
