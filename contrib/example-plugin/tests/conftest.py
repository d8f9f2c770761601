"""One torch thread (CI machines are small and shared)."""

import torch

torch.set_num_threads(1)
