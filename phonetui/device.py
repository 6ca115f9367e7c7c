"""Where tensors live and how a step runs fast: device choice, precision, residency, allocator."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from .errors import PhonetuiError


def resolve_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; a named device that is not there is a PhonetuiError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        raise PhonetuiError(f"training.device = '{name}': no such CUDA device here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise PhonetuiError(f"training.device = '{name}': MPS is not available here")
    return dev


def gpu_line(device: torch.device) -> str | None:
    """While a run trains on a CUDA device: its memory in use (of the total) and utilisation, e.g.
    'GPU 3.2/80 GiB, 87%'; None on other devices. Utilisation needs NVML (pynvml), memory does not."""
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    try:
        busy = f", {torch.cuda.utilization(device)}%"
    except Exception:  # noqa: BLE001 - no NVML here: memory alone
        busy = ""
    return gpu_text(total - free, total, busy)


def gpu_text(used: int, total: int, busy: str = "") -> str:
    return f"GPU {used / 2**30:.1f}/{total / 2**30:.0f} GiB{busy}"


CPU_BF16_MIN_BATCH = 64  # below it, casting the weights to bf16 every step costs more than it saves
BF16_NATIVE = (8, 0)  # compute capability from which CUDA GPUs have bf16 units (Ampere: A100, A10, RTX 30xx on)
FAST_FP16 = {(6, 0), (6, 2)}  # Pascal parts with fast fp16 (P100, Jetson TX2); 6.1 (GTX 10xx) runs fp16 at 1/64
AutocastKind = Literal["off", "bf16", "fp16"]
AUTOCASTS = get_args(AutocastKind)


@dataclass(frozen=True)
class Autocast:
    """The dtype matmuls run in under autocast ("off", "bf16" or "fp16"), why, and whether the loss
    is scaled (fp16: its narrow exponent loses small gradients without a GradScaler). Weights,
    optimizer state and the loss stay fp32 in every case."""

    kind: AutocastKind = "off"
    why: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.kind)

    @property
    def scaler(self) -> bool:
        return self.kind == "fp16"

    def label(self) -> str:
        """', bf16 autocast' or ', fp16 autocast + GradScaler' for the device line; '' when off."""
        return {"bf16": ", bf16 autocast", "fp16": ", fp16 autocast + GradScaler"}.get(self.kind, "")


def capability(device: torch.device) -> tuple[int, int] | None:
    """A CUDA device's compute capability (None on other devices)."""
    return tuple(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None


def autocast(precision: str, device: torch.device, batch_size: int,
             cc: tuple[int, int] | None = None) -> Autocast:
    """What `precision` runs as on this device. 'fp32' and 'tf32' never autocast; 'bf16' and 'fp16'
    always (CUDA and CPU only); 'auto' where the hardware is fast at it: on CUDA bf16 where the GPU
    has bf16 units (compute capability >= 8.0; torch's is_bf16_supported() also says True where bf16
    is only emulated, so it is not asked), fp16 with a GradScaler on the older GPUs with fast fp16
    (7.x tensor cores: T4, V100; 6.0: P100), fp32 elsewhere; on a CPU bf16 where it has AMX tiles
    and batches hold at least CPU_BF16_MIN_BATCH rows. `cc` stands in for the device's compute
    capability (tests)."""
    if precision in ("bf16", "fp16"):
        if device.type not in ("cuda", "cpu"):
            raise PhonetuiError(f"training.precision = '{precision}': {precision} autocast runs on CUDA and CPU, "
                                f"not {device.type}")
        cc = cc or capability(device)
        slow = (f"; compute capability {cc[0]}.{cc[1]} has no bf16 units, so it is emulated (fp16 is the fast one there)"
                if precision == "bf16" and cc and cc < BF16_NATIVE else "")
        return Autocast(precision, f"precision: {precision} (asked){slow}")
    if precision != "auto":
        return Autocast("off", "")
    if device.type == "cuda":
        cc = cc or capability(device)
        where = f"compute capability {cc[0]}.{cc[1]}"
        if cc >= BF16_NATIVE:
            return Autocast("bf16", f"precision: bf16 autocast (auto: {where} has bf16 units)")
        if cc[0] == 7 or cc in FAST_FP16:
            return Autocast("fp16", f"precision: fp16 autocast + GradScaler (auto: {where} has fast fp16 and no "
                                    "bf16 units; bf16 would be emulated)")
        return Autocast("off", f"precision: fp32 (auto: {where} has neither bf16 units nor fast fp16)")
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    if device.type == "cpu" and batch_size >= CPU_BF16_MIN_BATCH and amx():
        return Autocast("bf16", "precision: bf16 autocast (auto: this CPU has AMX tiles)")
    return Autocast("off", "")


def keep_freed_memory() -> None:
    """Have glibc's malloc reuse freed buffers rather than hand them back to the kernel.

    Every training step allocates activations and bf16 copies of a few MB; by default each is a
    fresh mmap whose pages fault in again: 230 (fp32) to 870 (bf16) page faults a step at batch
    512, a fifth of a bf16 step on CPU. Process-wide; does nothing where glibc is not the C library.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks under 32 MiB come from the heap
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD: keep up to 512 MiB of freed heap
    except (OSError, AttributeError):
        pass


def fits(nbytes: int, device: torch.device) -> bool:
    """Whether `nbytes` of data can live on the device with room left to train (CPU: always)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < 0.6 * free


def to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor view of x on the host, or, where it fits, a copy resident on the device, filled chunk by chunk."""
    host = torch.from_numpy(x)
    if device.type == "cpu" or not fits(x.nbytes, device):
        return host
    out = torch.empty(host.shape, dtype=host.dtype, device=device)
    for lo in range(0, len(host), 1 << 18):
        out[lo:lo + (1 << 18)].copy_(host[lo:lo + (1 << 18)])
    return out


def free_memory(device: torch.device) -> int | None:
    """Bytes free for training on the device (CPU: MemAvailable), or None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
