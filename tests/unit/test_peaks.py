"""Device peak TFLOP/s lookup by torch device name and Lightning precision."""

from __future__ import annotations

import pytest

from trainpipe.perf.peaks import _TABLE, device_peaks, peak_tflops

# H100 SXM datasheet: BF16 tensor 1,979 TFLOP/s *with* sparsity; the dense peak is half
H100_SXM_BF16 = 1979 / 2


def test_h100_sxm_name_gives_the_dense_bf16_peak() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16-mixed") == pytest.approx(H100_SXM_BF16, 1e-3)
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16-true") == pytest.approx(H100_SXM_BF16, 1e-3)


@pytest.mark.parametrize("name", ["NVIDIA H100 PCIe", "NVIDIA H100 NVL"])
def test_other_h100_parts_do_not_match_the_sxm_row(name: str) -> None:
    sxm = peak_tflops("NVIDIA H100 80GB HBM3", "bf16-mixed")
    value = peak_tflops(name, "bf16-mixed")
    assert value is not None and value < sxm
    assert device_peaks(name) != device_peaks("NVIDIA H100 80GB HBM3")


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA A100-SXM4-40GB",
        "NVIDIA A100-PCIE-40GB",
        "NVIDIA A100 80GB PCIe",
    ],
)
def test_a100_variants_share_one_peak(name: str) -> None:
    # A100 datasheet: BF16 312, TF32 156, FP32 19.5 (dense), whatever the form factor or memory
    assert peak_tflops(name, "bf16-mixed") == 312
    assert peak_tflops(name, "32-true", tf32=True) == 156
    assert peak_tflops(name, "32-true") == 19.5
    assert peak_tflops(name, 32) == 19.5  # Lightning also accepts the bare int


@pytest.mark.parametrize(
    "name, row",
    [
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB200", "GB200"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA A10G", "A10G"),
        ("Tesla V100-SXM2-16GB", "V100 SXM2"),
        ("Tesla V100-PCIE-32GB", "V100 PCIe"),
        ("Tesla T4", "T4"),
        ("AMD Instinct MI300X", "MI300X"),
        ("AMD Instinct MI250X", "MI250X"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ],
)
def test_names_as_torch_prints_them_find_their_own_row(name: str, row: str) -> None:
    peaks = device_peaks(name)
    assert peaks is not None and peaks.name == row


@pytest.mark.parametrize(
    "name",
    ["NVIDIA GeForce GTX 1080", "NVIDIA GeForce RTX 4090 Laptop GPU", "cpu", "", "H1000"],
)
def test_unknown_devices_give_none(name: str) -> None:
    assert peak_tflops(name, "bf16-mixed") is None


def test_a_mig_slice_gives_none() -> None:
    # a slice has a fraction of the chip's tensor cores: the full-chip peak would flatter MFU
    assert peak_tflops("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "bf16-mixed") is None


def test_precisions_the_hardware_lacks_give_none_and_fp32_without_tf32_units() -> None:
    assert peak_tflops("Tesla V100-SXM2-16GB", "bf16-mixed") is None  # Volta: no bf16
    assert peak_tflops("Tesla V100-SXM2-16GB", "16-mixed") == 125
    # no TF32 units: enabling TF32 leaves fp32 matmuls at the fp32 rate
    assert peak_tflops("Tesla V100-SXM2-16GB", "32-true", tf32=True) == 15.7
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "64-true") is None
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "no-such-precision") is None


def test_table_rows_are_consistent() -> None:
    # tensor-core rates double from tf32 to bf16 to fp8 on every part listed (within the
    # datasheets' rounding, e.g. B200's "2.2 PF" TF32) and fp32 is slower than bf16: one column
    # copied as a sparse figure, or from the wrong row, breaks one of these.
    rows = [row for _, row in _TABLE]
    assert sum(r.bf16 is not None for r in rows) >= 10 and sum(r.fp8 is not None for r in rows) >= 4
    for row in rows:
        if row.bf16 is not None:
            assert row.fp16 == row.bf16, row.name
            assert row.fp32 < row.bf16, row.name
        if row.tf32 is not None and row.bf16 is not None:
            assert row.bf16 == pytest.approx(2 * row.tf32, rel=0.03), row.name
        if row.fp8 is not None:
            assert row.fp8 == pytest.approx(2 * row.bf16, rel=0.03), row.name


def test_device_memory_comes_from_the_name_else_the_table() -> None:
    from trainpipe.perf.peaks import device_memory_gib

    assert device_memory_gib("NVIDIA A100-SXM4-80GB") == 80
    assert device_memory_gib("NVIDIA A100-PCIE-40GB") == 40
    assert device_memory_gib("NVIDIA H100 80GB HBM3") == 80
    assert device_memory_gib("NVIDIA L4") == 24 and device_memory_gib("AMD Instinct MI300X") == 192
    assert device_memory_gib("Radeon 9000") is None
    assert all(row.memory_gib for _, row in _TABLE)
