"""`phonetui serve`: the app in a web browser (textual-serve), guarded.

Every websocket that textual-serve accepts starts an app process that can train and delete runs,
so the server admits a browser only:
- with the token: a random one per `serve`, in the URL it prints (as Jupyter does) and in the
  websocket's path that the page it serves uses; `--no-token` turns this off, by explicit choice;
- from its own page: the websocket's Origin must be the address the page was loaded from (the Host
  header), and where `serve` listens on loopback that address must be a loopback name (so a DNS
  rebinding page that calls itself localhost gets nowhere);
- while fewer than `max_apps` app processes run (each tab is one);
and the page it serves needs nothing from the internet (textual-serve's page loads a web font from
Google; this one uses the copy that textual-serve ships). Refusals are an HTTP error before any app
process starts, and one line on the server's console. A closed tab ends its app: textual-serve sends
it a 'quit', and the app stops its run saying the page was closed (SERVED tells it it is served).
"""

from __future__ import annotations

import ipaddress
import secrets
import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from textual_serve.server import Server

from .errors import PhonetuiError, note

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
TEMPLATES = Path(__file__).parent / "serve_templates"  # textual-serve's page (MIT), its web font served locally


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GuardedServer(Server):
    """textual-serve's Server with a token, an Origin check and a bound on app processes."""

    def __init__(self, command: str, host: str, port: int, token: str | None, max_apps: int,
                 say=print) -> None:
        super().__init__(command, host=host, port=port, title="phonetui", templates_path=TEMPLATES)
        self.token, self.max_apps, self.say, self.apps = token, max_apps, say, 0

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(24)

    def url(self) -> str:
        """The address to open, token included."""
        return self.public_url + "/" + (f"?token={self.token}" if self.token else "")

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        if self.token:  # the page's websocket carries the token in its path (textual.js appends ?width=...)
            app.router.add_get("/ws/{token}", self.handle_websocket, name="guarded-websocket")
        return app

    async def on_startup(self, app: web.Application) -> None:
        """(textual-serve prints its logo and the address without the token here.)"""

    def _refuse(self, request: web.Request, status: type[web.HTTPException], why: str) -> web.HTTPException:
        path = "/ws" if request.path.startswith("/ws") else request.path  # the token stays out of the console
        self.say(f"phonetui serve: refused {request.method} {path[:80]} from {request.remote}: {why}")
        return status(text=f"phonetui serve: {why}\n")

    def _token_ok(self, given: str | None) -> bool:
        return self.token is None or (given is not None and secrets.compare_digest(given, self.token))

    def _host_ok(self, request: web.Request) -> bool:
        """The Host the browser asked for: any where `serve` listens beyond loopback, a loopback name
        where it listens on loopback (a rebound DNS name is not one)."""
        host = urlsplit(f"//{request.host}").hostname or ""
        return not is_loopback(self.host) or is_loopback(host)

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict:
        if not self._token_ok(request.query.get("token")):
            raise self._refuse(request, web.HTTPForbidden, "no token or the wrong one: open the address that "
                                                           "`phonetui serve` printed, token included")
        if not self._host_ok(request):
            raise self._refuse(request, web.HTTPForbidden, f"Host {request.host} is not this server's loopback address")
        context = await Server.handle_index.__wrapped__(self, request)  # textual-serve's page data, not rendered
        if self.token:
            context["app_websocket_url"] = context["app_websocket_url"].rstrip("/") + f"/{self.token}"
        return context

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        given = request.match_info.get("token")
        if not self._token_ok(given):
            raise self._refuse(request, web.HTTPForbidden, "the websocket needs the token" if given is None else
                               "the websocket's token is wrong")
        if not self._host_ok(request):
            raise self._refuse(request, web.HTTPForbidden, f"Host {request.host} is not this server's loopback address")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise self._refuse(request, web.HTTPForbidden, f"Origin {origin[:80]} is not this page's ({request.host})")
        if self.apps >= self.max_apps:
            raise self._refuse(request, web.HTTPServiceUnavailable,
                               f"{self.max_apps} app processes already run (--max-apps); close a tab first")
        self.apps += 1
        try:
            return await super().handle_websocket(request)
        finally:
            self.apps -= 1


SERVED = "PHONETUI_SERVED"  # 1 in each tab's app: it tells a closed page from a quit (phonetui/tui/app.py)


def app_command(flags: dict, presets_dirs: list, tensorboard: bool) -> str:
    """The command line of each tab's app (textual-serve runs it with /bin/sh): `phonetui` with the
    flags `serve` was given, told that it is served."""
    args = [a for key, value in flags.items() for a in (f"--{key.replace('_', '-')}", str(value))]
    args += [a for folder in presets_dirs for a in ("--presets", str(folder))] + ["--tensorboard"] * tensorboard
    return f"{SERVED}=1 " + shlex.join([sys.executable, "-m", "phonetui", *args])


def run(command: str, host: str, port: int, token: bool, max_apps: int, say) -> int:
    """Serve until Ctrl+C: the address (token included) said first, a warning where it is not loopback."""
    if max_apps < 1:
        raise PhonetuiError(f"--max-apps {max_apps}: must be an integer >= 1")
    if not 1 <= port <= 65535:
        raise PhonetuiError(f"--port {port}: must be from 1 to 65535")
    server = GuardedServer(command, host, port, GuardedServer.new_token() if token else None, max_apps,
                           say=lambda line: print(line, file=sys.stderr, flush=True))
    if not is_loopback(host):
        note(f"warning: listening on {host}, beyond this machine: anyone who reaches port {port}"
             + (" and has the token can train and delete runs" if token else " can train and delete runs (--no-token)"))
    elif not token:
        note("warning: --no-token: any program on this machine can drive the app")
    say(f"serving the app at {server.url()} (Ctrl+C stops)")
    try:
        server.serve()
    except OSError as e:
        raise PhonetuiError(f"serve --host {host} --port {port}: {e.strerror or e}") from None
    return 0
