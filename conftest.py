"""Test configuration for every test directory: one torch thread (2-core CI machines are easily
oversubscribed, and torch on 2 busy threads can run 10-30x slower)."""

import torch

torch.set_num_threads(1)
