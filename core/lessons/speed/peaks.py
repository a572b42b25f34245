"""GPU datasheet peaks: dense TFLOP/s per card and dtype, and which row a torch.cuda.get_device_name belongs to."""

from __future__ import annotations

import re

# Dense (no sparsity) peak TFLOP/s per GPU and dtype. Source: NVIDIA datasheet of each product (the
# "with sparsity" figures halved; for the GeForce RTX 4090, NVIDIA's Ada Lovelace architecture
# whitepaper, FP16/BF16 with FP32 accumulate, which is what PyTorch's matmul uses). "float32" is the
# non-tensor-core FP32 figure. Cards without TF32 units (Volta, Turing) run "tf32" as float32; None
# where the card has no such arithmetic in hardware (bfloat16 before Ampere).
PEAK_TFLOPS: dict[str, dict[str, float | None]] = {
    "H100 SXM": {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5, "float16": 989.5},
    "H100 PCIe": {"float32": 51.0, "tf32": 378.0, "bfloat16": 756.5, "float16": 756.5},
    "H200": {"float32": 67.0, "tf32": 494.5, "bfloat16": 989.5, "float16": 989.5},
    "A100": {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0, "float16": 312.0},  # 40 GB and 80 GB, SXM and PCIe
    "A10": {"float32": 31.2, "tf32": 62.5, "bfloat16": 125.0, "float16": 125.0},
    "L4": {"float32": 30.3, "tf32": 60.0, "bfloat16": 121.0, "float16": 121.0},
    "RTX 4090": {"float32": 82.6, "tf32": 82.6, "bfloat16": 165.2, "float16": 165.2},
    "V100 SXM2": {"float32": 15.7, "tf32": 15.7, "bfloat16": None, "float16": 125.0},
    "V100 PCIe": {"float32": 14.0, "tf32": 14.0, "bfloat16": None, "float16": 112.0},
    "V100S": {"float32": 16.4, "tf32": 16.4, "bfloat16": None, "float16": 130.0},
    "T4": {"float32": 8.1, "tf32": 8.1, "bfloat16": None, "float16": 65.0},
}
# torch.cuda.get_device_name -> table row: the first pattern that matches (case-insensitive) wins. Whole
# words, not bare substrings: "A10" must not match "A100" or "A10G", nor "L4" match "L40S". NVL cards
# (H100 NVL, H200 NVL) have lower clocks than the SXM parts: no row, no fraction.
GPU_PATTERNS: tuple[tuple[str, str | None], ...] = (
    (r"\bNVL\b", None),
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe"),
    (r"\bH100\b", "H100 SXM"),  # "NVIDIA H100 80GB HBM3"
    (r"\bH200\b", "H200"),
    (r"\bA100\b", "A100"),
    (r"\bA10\b", "A10"),
    (r"\bL4\b", "L4"),
    (r"\bRTX 4090\b(?! D\b)", "RTX 4090"),
    (r"\bV100S\b", "V100S"),
    (r"\bV100\b.*\bPCIe\b", "V100 PCIe"),
    (r"\bV100\b", "V100 SXM2"),
    (r"\bT4\b", "T4"),
)


def gpu_row(name: str) -> str | None:
    """Return the PEAK_TFLOPS row of a torch.cuda.get_device_name, or None for a card not in the table."""
    for pattern, row in GPU_PATTERNS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return row
    return None


def gpu_peak_tflops(name: str, dtype: str) -> float | None:
    """Return the datasheet's dense peak TFLOP/s of the named GPU in dtype, or None when unknown."""
    row = gpu_row(name)
    return None if row is None else PEAK_TFLOPS[row][dtype]


def peaks_by_pattern(dtype: str) -> list[tuple[str, float | None]]:
    """Return (name pattern, peak TFLOP/s in dtype) in matching order: the table a script carries."""
    return [(pattern, None if row is None else PEAK_TFLOPS[row][dtype]) for pattern, row in GPU_PATTERNS]
