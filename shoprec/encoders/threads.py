"""CPU thread limits shared by the torch and numpy encoders.

On a small shared box, torch's default of one thread per *host* core (not per core this process
may use, e.g. in a container) oversubscribes the CPU and makes encoding several times slower.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (honours affinity / cgroup pinning where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows
        return max(1, os.cpu_count() or 1)


def limit_torch_threads() -> int:
    """Lower torch's intra-op threads to the usable cores; never raise a limit a user chose."""
    import torch

    cores = available_cores()
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)
    return torch.get_num_threads()
