"""Test configuration: one torch thread (2-core CI machines are easily oversubscribed)."""

import torch

torch.set_num_threads(1)
