"""TensorRT plan logic that needs no GPU: cache keys, profiles, run plans, records."""

from dataclasses import replace

import pytest

from copilot.inference.trt_plan import (PlanKey, Profile, RunPlan, choose_profile, default_profiles, list_plans, plan_run,
                                        write_record)

PROFILES = default_profiles(512, 8)
KEY = PlanKey("a" * 64, "10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0", "fp16", PROFILES)


@pytest.mark.parametrize("field,value", [
    ("onnx_sha256", "b" * 64),
    ("tensorrt_version", "10.10.0"),
    ("gpu_name", "NVIDIA L4"),
    ("compute_capability", "8.9"),
    ("precision", "fp32"),
    ("profiles", default_profiles(512, 8, scales=(1, 2))),
    ("profiles", default_profiles(256, 8)),
])
def test_cache_key_changes_with_each_field(tmp_path, field, value):
    other = replace(KEY, **{field: value})
    assert other.digest() != KEY.digest()
    assert other.plan_path(tmp_path, "m") != KEY.plan_path(tmp_path, "m")


def test_cache_key_is_stable_and_paths_live_under_state_dir(tmp_path):
    same = PlanKey("a" * 64, "10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0", "fp16", default_profiles(512, 8))
    assert same.digest() == KEY.digest()
    plan = KEY.plan_path(tmp_path, "particles-stem")
    assert plan.is_relative_to(tmp_path / "engines" / "particles-stem" / ("a" * 12))
    assert plan.name.startswith("trt10-9-0-34-nvidia-h100-80gb-hbm3-sm90-fp16-") and plan.suffix == ".plan"
    assert KEY.record_path(tmp_path, "particles-stem") == plan.with_suffix(".json")
    # the timing cache is per GPU + TensorRT version, shared by models and precisions
    assert KEY.timing_cache_path(tmp_path) == replace(KEY, precision="fp32", onnx_sha256="c" * 64).timing_cache_path(
        tmp_path)
    assert KEY.timing_cache_path(tmp_path) != replace(KEY, gpu_name="NVIDIA L4").timing_cache_path(tmp_path)


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="precision"):
        replace(KEY, precision="fp8")


def test_default_profiles_keep_pixels_per_call():
    assert [(p.tile_px, p.min, p.opt, p.max) for p in PROFILES] == [
        (512, (1, 1, 8, 8), (8, 1, 512, 512), (8, 1, 512, 512)),
        (1024, (1, 1, 8, 8), (2, 1, 1024, 1024), (2, 1, 1024, 1024)),
        (2048, (1, 1, 8, 8), (1, 1, 2048, 2048), (1, 1, 2048, 2048)),
    ]
    with pytest.raises(ValueError):
        default_profiles(500, 8)


@pytest.mark.parametrize("n,h,w,expected", [
    (1, 8, 8, 0), (1, 512, 512, 0), (8, 512, 512, 0), (8, 512, 256, 0), (9, 512, 512, None),
    (1, 520, 512, 1), (2, 1024, 1024, 1), (3, 1024, 1024, None), (1, 2048, 1000, 2), (1, 2056, 8, None),
])
def test_choose_profile_picks_the_smallest_that_fits(n, h, w, expected):
    assert choose_profile(PROFILES, n, h, w) == expected


@pytest.mark.parametrize("h,w,mode,profile,tile,batch", [
    (100, 60, "whole", 0, 512, 1),
    (512, 512, "whole", 0, 512, 1),
    (819, 819, "whole", 1, 1024, 1),       # 2048² frame at 0.2 nm/px on a 0.5 nm/px model
    (1021, 1024, "whole", 1, 1024, 1),     # padded to 1024
    (1638, 1638, "whole", 2, 2048, 1),     # 4096² frame
    (2049, 100, "tiled", 2, 2048, 1),
    (5000, 5000, "tiled", 2, 2048, 1),
])
def test_plan_run(h, w, mode, profile, tile, batch):
    assert plan_run(PROFILES, h, w, 8) == RunPlan(mode, profile, tile, batch)


def test_plan_run_tiles_with_batches_when_only_small_profiles_exist():
    small = default_profiles(512, 8, scales=(1,))
    assert plan_run(small, 2000, 2000, 8) == RunPlan("tiled", 0, 512, 8)


def test_every_tile_of_a_tiled_plan_fits_its_profile():
    from copilot.inference.tiling import tile_grid

    small = default_profiles(512, 8, scales=(1,))
    plan = plan_run(small, 1500, 700, 8)
    for t in tile_grid(1500, 700, plan.tile_px, 32):
        assert small[plan.profile].fits(plan.batch, -(-t.h // 8) * 8, -(-t.w // 8) * 8)


def test_list_plans_reads_records(tmp_path):
    plan = KEY.plan_path(tmp_path, "m")
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"plan")
    write_record(KEY.record_path(tmp_path, "m"), {"key": KEY.to_dict(), "verification": {"accepted": True}})
    [(path, record)] = list_plans(tmp_path)
    assert path == plan and record["verification"]["accepted"] and record["key"]["precision"] == "fp16"


def test_profile_fits():
    p = Profile(512, (1, 1, 8, 8), (4, 1, 512, 512), (4, 1, 512, 512))
    assert p.fits(4, 512, 8) and not p.fits(5, 8, 8) and not p.fits(1, 4, 8) and p.max_batch == 4
