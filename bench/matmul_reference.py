"""The products of bench/src/bin/matmul.rs in PyTorch: python3 bench/matmul_reference.py"""
import time

import torch

SHAPES = [
    ("x [32,1792] W [1792,2048]", (32, 1792, 2048), False),
    ("dy [32,2048] W^T [2048,1792]", (32, 2048, 1792), True),
    ("dy [32,2048] W^T copied row-major", (32, 2048, 1792), False),
    ("x^T [1792,32] dy [32,2048]", (1792, 32, 2048), False),
    ("h [32,512] W [512,512]", (32, 512, 512), False),
    ("beams [96,1792] W [1792,2048]", (96, 1792, 2048), False),
    ("beams [96,1792] W^T [1792,2048]", (96, 1792, 2048), True),
    ("3 beams [3,1792] W [1792,2048]", (3, 1792, 2048), False),
    ("3 beams [3,1792] W^T [1792,2048]", (3, 1792, 2048), True),
    ("scores [4704,512] w [512,1]", (4704, 512, 1), False),
    ("square [1024,1024] x [1024,1024]", (1024, 1024, 1024), False),
]

print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads")
for name, (m, k, n), rhs_transposed in SHAPES:
    lhs = torch.randn(m, k)
    rhs = torch.randn(n, k).t() if rhs_transposed else torch.randn(k, n)
    lhs @ rhs
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        lhs @ rhs
    seconds = (time.perf_counter() - start) / runs
    print(f"{name:>36}: {seconds * 1e3:7.3f} ms {2 * m * k * n / seconds / 1e9:6.1f} GFLOP/s")

lhs, rhs = torch.randn(96, 1, 49), torch.randn(96, 49, 1280)
torch.bmm(lhs, rhs)
start = time.perf_counter()
for _ in range(50):
    torch.bmm(lhs, rhs)
seconds = (time.perf_counter() - start) / 50
name = "context 96 x [1,49] x [49,1280]"
print(f"{name:>36}: {seconds * 1e3:7.3f} ms {2 * 96 * 49 * 1280 / seconds / 1e9:6.1f} GFLOP/s")
