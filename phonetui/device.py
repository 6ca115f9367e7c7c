"""Where tensors live and how a step runs fast: device choice, precision, residency, allocator."""

from __future__ import annotations

import ctypes
import os

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


def use_bf16(precision: str, device: torch.device, batch_size: int) -> bool:
    """Whether matmuls run under bf16 autocast: 'fp32' and 'tf32' never, 'bf16' always (CUDA and CPU only), and
    'auto' where the hardware is fast at it: CUDA with bf16 support, and CPUs with AMX tiles when
    batches hold at least CPU_BF16_MIN_BATCH rows. Weights, optimizer state and the loss stay fp32."""
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise PhonetuiError(f"training.precision = 'bf16': bf16 autocast runs on CUDA and CPU, not {device.type}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return device.type == "cpu" and batch_size >= CPU_BF16_MIN_BATCH and amx()


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
