"""Pytest setup for the reproductions' tests."""
import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` on 2 cores: one torch thread per worker, or the workers oversubscribe the CPU.
    torch.set_num_threads(1)
