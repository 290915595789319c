"""Dense peak TFLOP/s of common accelerators, by device name and training precision.

The denominator of MFU. Values are the vendors' datasheet numbers for matrix (tensor-core)
throughput *without* 2:4 structured sparsity: NVIDIA prints the sparse figure with an asterisk
from Ampere on, so those are halved here. fp16 is with fp32 accumulation (what cuBLAS does for
PyTorch); on GeForce parts that is half the fp16-accumulate figure NVIDIA headlines.

Names are matched as `torch.cuda.get_device_name()` prints them ("NVIDIA H100 80GB HBM3" is
the SXM part, "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB", "AMD Instinct MI300X", ...). A name
no row matches, or a MIG slice (a fraction of the chip), gives None: callers then report no MFU
rather than a wrong one. Pass an explicit peak for anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DevicePeaks:
    """One device's dense peak TFLOP/s per math mode; None where the hardware has no such mode.

    `tf32` None means fp32 matmuls run at the `fp32` rate even when TF32 is enabled (no TF32
    units, or ROCm, which ignores PyTorch's TF32 flag unless HIPBLASLT_ALLOW_TF32=1 is set).
    """

    name: str
    bf16: float | None
    fp16: float | None
    tf32: float | None
    fp32: float | None
    fp8: float | None = None
    # memory in GiB of the part the row names (the smallest variant where there are several;
    # a size in the device's name wins: "NVIDIA A100-SXM4-80GB")
    memory_gib: float | None = None


# Ordered: the first pattern that matches the lower-cased name wins, so the specific variants
# ("h100 ... pcie", "l40s", "a10g") come before the generic ones ("h100", "l40", "a10").
_TABLE: tuple[tuple[str, DevicePeaks], ...] = (
    # H100 NVL product brief (94 GB, per GPU): TF32 835*, BF16/FP16 1,671*, FP8 3,341*, FP32 60
    (r"\bh100\b.*\bnvl\b", DevicePeaks("H100 NVL", 835.5, 835.5, 417.5, 60.0, 1670.5, memory_gib=94)),
    # H100 datasheet, PCIe column: TF32 756*, BF16/FP16 1,513*, FP8 3,026*, FP32 51
    (r"\bh100\b.*\bpcie\b", DevicePeaks("H100 PCIe", 756.5, 756.5, 378.0, 51.0, 1513.0, memory_gib=80)),
    # H100 datasheet, SXM column: TF32 989*, BF16/FP16 1,979*, FP8 3,958*, FP32 67
    (r"\bh100\b", DevicePeaks("H100 SXM", 989.4, 989.4, 494.7, 67.0, 1978.9, memory_gib=80)),
    # GH200 Grace Hopper datasheet (GPU): same Hopper tensor rates as H100 SXM
    (r"\bgh200\b", DevicePeaks("GH200", 989.4, 989.4, 494.7, 67.0, 1978.9, memory_gib=96)),
    # H200 datasheet, NVL column: TF32 835*, BF16/FP16 1,671*, FP8 3,341*, FP32 60
    (r"\bh200\b.*\bnvl\b", DevicePeaks("H200 NVL", 835.5, 835.5, 417.5, 60.0, 1670.5, memory_gib=141)),
    # H200 datasheet, SXM column: TF32 989*, BF16/FP16 1,979*, FP8 3,958*, FP32 67
    (r"\bh200\b", DevicePeaks("H200 SXM", 989.4, 989.4, 494.7, 67.0, 1978.9, memory_gib=141)),
    # GB200 NVL72 spec, per Blackwell GPU: TF32 2.5 PF*, BF16/FP16 5 PF*, FP8 10 PF*, FP32 80 TF
    (r"\bgb200\b", DevicePeaks("GB200", 2500.0, 2500.0, 1250.0, 80.0, 5000.0, memory_gib=186)),
    # HGX B200 spec, per GPU: TF32 2.2 PF*, BF16/FP16 4.5 PF*, FP8 9 PF*, FP32 75 TF
    (r"\bb200\b", DevicePeaks("B200", 2250.0, 2250.0, 1100.0, 75.0, 4500.0, memory_gib=180)),
    # A100 datasheet (SXM4 and PCIe, 40 and 80 GB alike): TF32 156, BF16/FP16 312, FP32 19.5
    (r"\ba100\b", DevicePeaks("A100", 312.0, 312.0, 156.0, 19.5, memory_gib=40)),
    # L40S datasheet: TF32 183, BF16/FP16 362.05, FP8 733, FP32 91.6
    (r"\bl40s\b", DevicePeaks("L40S", 362.05, 362.05, 183.0, 91.6, 733.0, memory_gib=48)),
    # L40 datasheet: TF32 90.5, BF16/FP16 181.05, FP8 362, FP32 90.5
    (r"\bl40\b", DevicePeaks("L40", 181.05, 181.05, 90.5, 90.5, 362.0, memory_gib=48)),
    # L4 datasheet: TF32 120*, BF16/FP16 242*, FP8 485*, FP32 30.3
    (r"\bl4\b", DevicePeaks("L4", 121.0, 121.0, 60.0, 30.3, 242.5, memory_gib=24)),
    # A10G (AWS G5): no NVIDIA datasheet; AWS-published rates: BF16/FP16 70, TF32 35, FP32 35
    (r"\ba10g\b", DevicePeaks("A10G", 70.0, 70.0, 35.0, 35.0, memory_gib=24)),
    # A10 datasheet: TF32 62.5, BF16/FP16 125, FP32 31.2
    (r"\ba10\b", DevicePeaks("A10", 125.0, 125.0, 62.5, 31.2, memory_gib=24)),
    # V100S PCIe datasheet: tensor (FP16) 130, FP32 16.4; Volta has no BF16 or TF32
    (r"\bv100s\b", DevicePeaks("V100S PCIe", None, 130.0, None, 16.4, memory_gib=32)),
    # V100 datasheet, PCIe column: tensor 112, FP32 14
    (r"\bv100\b.*\bpcie\b", DevicePeaks("V100 PCIe", None, 112.0, None, 14.0, memory_gib=16)),
    # V100 datasheet, SXM2 column: tensor 125, FP32 15.7
    (r"\bv100\b", DevicePeaks("V100 SXM2", None, 125.0, None, 15.7, memory_gib=16)),
    # T4 datasheet: mixed FP16/FP32 65, FP32 8.1; Turing has no BF16 or TF32
    (r"\bt4\b", DevicePeaks("T4", None, 65.0, None, 8.1, memory_gib=16)),
    # AMD Instinct MI300X datasheet: BF16/FP16 1,307.4, FP8 2,614.9, FP32 matrix 163.4
    (r"\bmi300x\b", DevicePeaks("MI300X", 1307.4, 1307.4, None, 163.4, 2614.9, memory_gib=192)),
    # AMD Instinct MI325X datasheet: same compute as MI300X
    (r"\bmi325x\b", DevicePeaks("MI325X", 1307.4, 1307.4, None, 163.4, 2614.9, memory_gib=256)),
    # AMD Instinct MI250X datasheet: BF16/FP16 383, FP32 matrix 95.7
    (r"\bmi250x\b", DevicePeaks("MI250X", 383.0, 383.0, None, 95.7, memory_gib=128)),
    # AMD Instinct MI250 datasheet: BF16/FP16 362.1, FP32 matrix 90.5
    (r"\bmi250\b", DevicePeaks("MI250", 362.1, 362.1, None, 90.5, memory_gib=128)),
    # Ada whitepaper, RTX 4090 (fp32 accumulate): BF16/FP16 165.2, FP8 330.3, TF32 82.6, FP32 82.6
    (r"\brtx 4090$", DevicePeaks("RTX 4090", 165.2, 165.2, 82.6, 82.6, 330.3, memory_gib=24)),
    # Ampere GA102 whitepaper, RTX 3090 (fp32 accumulate): BF16/FP16 71, TF32 35.6, FP32 35.6
    (r"\brtx 3090$", DevicePeaks("RTX 3090", 71.0, 71.0, 35.6, 35.6, memory_gib=24)),
)

# Lightning's precision strings (and plain math-mode names) → DevicePeaks field.
# Transformer Engine runs its Linear layers in fp8: MFU against the fp8 peak is the strict one.
_PRECISION_FIELD = {
    "bf16-mixed": "bf16",
    "bf16-true": "bf16",
    "bf16": "bf16",
    "16-mixed": "fp16",
    "16-true": "fp16",
    "16": "fp16",
    "fp16": "fp16",
    "32-true": "fp32",
    "32": "fp32",
    "fp32": "fp32",
    "tf32": "tf32",
    "fp8": "fp8",
    "transformer-engine": "fp8",
    "transformer-engine-float16": "fp8",
}


def device_peaks(device_name: str) -> DevicePeaks | None:
    """The table row for a device name as torch prints it; None if unknown or a MIG slice."""
    name = " ".join(device_name.lower().split())
    if re.search(r"\bmig\b", name):  # "NVIDIA A100-SXM4-40GB MIG 1g.5gb": a fraction of a chip
        return None
    for pattern, peaks in _TABLE:
        if re.search(pattern, name):
            return peaks
    return None


def known_devices() -> list[str]:
    """The devices the table knows, by their short names (H100 SXM, A100, …)."""
    return [peaks.name for _, peaks in _TABLE]


def device_memory_gib(device_name: str) -> float | None:
    """GiB of memory of one device: the size in its name ("…-80GB", "80GB HBM3"), else the
    table's; None if unknown or a MIG slice (its size is in its profile, not the chip's)."""
    peaks = device_peaks(device_name)
    if peaks is None:
        return None
    sized = re.search(r"(\d+)\s*gb\b", device_name.lower())
    return float(sized.group(1)) if sized else peaks.memory_gib


def precision_field(precision: str | int, tf32: bool = False) -> str | None:
    """The math mode a Lightning precision string trains in ("bf16", "tf32", ...), or None."""
    field = _PRECISION_FIELD.get(str(precision).lower())
    if field == "fp32" and tf32:
        return "tf32"
    return field


def peak_tflops(device_name: str, precision: str | int, tf32: bool = False) -> float | None:
    """Dense peak TFLOP/s of `device_name` training in Lightning `precision`, or None.

    `tf32`: 32-bit training with TF32 matmuls enabled (torch.backends.cuda.matmul). Devices
    without TF32 units then run at their fp32 rate.
    """
    peaks, field = device_peaks(device_name), precision_field(precision, tf32)
    if peaks is None or field is None:
        return None
    value = getattr(peaks, field)
    if value is None and field == "tf32":
        value = peaks.fp32
    return value
