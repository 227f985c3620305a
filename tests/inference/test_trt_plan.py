"""TensorRT plan logic that needs no GPU: cache keys, profiles, run plans, records."""

from dataclasses import replace

import pytest

import os
from concurrent.futures import ThreadPoolExecutor

from copilot.inference.trt_plan import (BuildRecipe, PlanKey, Profile, RunPlan, atomic_write, choose_profile,
                                        default_profiles, list_plans, plan_run, read_record, shape_classes,
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
    ("profiles", default_profiles(512, 8, tile_batch=4)),
    ("driver_version", "580.1"),
    ("recipe", BuildRecipe(2, True, 2 << 30)),        # TF32 allowed
    ("recipe", BuildRecipe(2, False, 4 << 30)),       # another workspace
    ("recipe", BuildRecipe(1, False, 2 << 30)),       # another float16 conversion
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


def test_default_profiles_are_tuned_for_the_batches_sent():
    assert [(p.tile_px, p.min, p.opt, p.max) for p in PROFILES] == [
        (512, (1, 1, 8, 8), (1, 1, 512, 512), (1, 1, 512, 512)),
        (1024, (1, 1, 8, 8), (1, 1, 1024, 1024), (1, 1, 1024, 1024)),
        (2048, (1, 1, 8, 8), (1, 1, 2048, 2048), (1, 1, 2048, 2048)),
    ]
    batched = default_profiles(512, 8, tile_batch=4)
    assert [p.max[0] for p in batched] == [1, 1, 4]
    with pytest.raises(ValueError):
        default_profiles(500, 8)
    with pytest.raises(ValueError):
        default_profiles(512, 8, tile_batch=0)


@pytest.mark.parametrize("tile,multiple,scales,tile_batch", [(512, 8, (1, 2, 4), 1), (512, 8, (1, 2, 4), 4),
                                                               (64, 4, (1,), 8), (128, 8, (1, 3), 2)])
def test_shape_classes_cover_every_way_an_image_can_run(tile, multiple, scales, tile_batch):
    profiles = default_profiles(tile, multiple, scales=scales, tile_batch=tile_batch)
    classes = shape_classes(profiles, multiple)
    reachable = {("whole", i) for i in range(len(profiles))} | {("tiled", len(profiles) - 1)}
    assert set(classes) == reachable
    for (mode, profile), edge in classes.items():
        plan = plan_run(profiles, edge, edge, multiple)
        assert (plan.mode, plan.profile) == (mode, profile)
        p = profiles[profile]
        assert p.min[0] <= plan.batch <= p.max[0]
        # profiles are tuned (opt) for the batch they are sent: 1 whole frame, or tile_batch tiles
        assert p.opt[0] == (plan.batch if mode == "tiled" or profile < len(profiles) - 1 else tile_batch)


@pytest.mark.parametrize("n,h,w,expected", [
    (1, 8, 8, 0), (1, 512, 512, 0), (8, 512, 512, None), (2, 512, 256, None), (1, 520, 512, 1),
    (2, 1024, 1024, None), (1, 2048, 1000, 2), (1, 2056, 8, None),
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
    small = default_profiles(512, 8, scales=(1,), tile_batch=8)
    assert plan_run(small, 2000, 2000, 8) == RunPlan("tiled", 0, 512, 8)
    assert choose_profile(small, 8, 512, 512) == 0


def test_every_tile_of_a_tiled_plan_fits_its_profile():
    from copilot.inference.tiling import tile_grid

    small = default_profiles(512, 8, scales=(1,), tile_batch=8)
    plan = plan_run(small, 1500, 700, 8)
    for t in tile_grid(1500, 700, plan.tile_px, 32):
        assert small[plan.profile].fits(plan.batch, -(-t.h // 8) * 8, -(-t.w // 8) * 8)


def test_recipe_follows_precision():
    assert BuildRecipe.for_precision("fp32").tf32 is False  # true FP32
    assert BuildRecipe.for_precision("fp32").fp16_conversion == 0
    assert BuildRecipe.for_precision("fp16").fp16_conversion > 0
    assert KEY.to_dict()["recipe"] == {"fp16_conversion": BuildRecipe.for_precision("fp16").fp16_conversion,
                                       "tf32": False, "workspace_bytes": 2 << 30, "strongly_typed": True}


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "timing.cache"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):  # a writer that fails half-way (here: not bytes at all)
        atomic_write(target, None)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["timing.cache"]


def _writer(args):
    path, tag = args
    for _ in range(30):
        atomic_write(path, tag * 20000)
        write_record(path.with_suffix(".json"), {"writer": tag.decode()})
    return tag


def test_concurrent_writers_never_mix_their_files(tmp_path):
    path = tmp_path / "engines" / "x.plan"
    with ThreadPoolExecutor(2) as pool:  # two writers at once (threads: forking a test process can deadlock)
        list(pool.map(_writer, [(path, b"a"), (path, b"b")]))
    data = path.read_bytes()
    assert data in (b"a" * 20000, b"b" * 20000)
    assert read_record(path.with_suffix(".json"))["writer"] in ("a", "b")
    assert sorted(os.listdir(path.parent)) == ["x.json", "x.plan"]


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
