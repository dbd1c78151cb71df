"""coursepkg.config: the device, the profiles, and every budget living in a profile."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from coursepkg import config


def test_profile_names_and_env_override(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "full")
    assert config.profile().name == "full"
    monkeypatch.setenv(config.PROFILE_ENV, " Quick ")
    assert config.profile().name == "quick"
    assert config.profile("full") is config.FULL
    assert config.profile(config.QUICK) is config.QUICK


def test_default_profile_follows_the_device(monkeypatch):
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    monkeypatch.setenv(config.DEVICE_ENV, "cpu")
    assert config.profile().name == "quick"
    monkeypatch.setattr(config, "device", lambda: torch.device("cuda"))
    assert config.default_profile_name() == "full"


def test_bad_profile_name_is_one_clear_line(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'fast'.*quick") as err:
        config.profile("fast")
    assert "\n" not in str(err.value)
    monkeypatch.setenv(config.PROFILE_ENV, "turbo")
    with pytest.raises(ValueError, match="unset COURSEPKG_PROFILE"):
        config.profile()


def test_device_choice(monkeypatch):
    monkeypatch.setenv(config.DEVICE_ENV, "cpu")
    assert config.device() == torch.device("cpu")
    monkeypatch.setenv(config.DEVICE_ENV, "toaster")
    with pytest.raises(ValueError, match="COURSEPKG_DEVICE"):
        config.device()
    monkeypatch.delenv(config.DEVICE_ENV)
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert config.device().type == "cuda"
    else:
        assert config.device().type in {"cpu", "mps"}


def test_profiles_share_fields_and_full_is_never_cheaper():
    quick, full = config.QUICK.as_dict(), config.FULL.as_dict()
    assert quick.keys() == full.keys()
    for name, value in quick.items():
        if name == "name" or isinstance(value, float):
            continue
        if value is None:  # None means "everything": quick must not use everything where full does not
            assert full[name] is None, name
        elif full[name] is not None:
            assert full[name] >= value, f"full profile's {name} is smaller than quick's"
    assert config.FULL.train_subset is None  # the full profile trains on the whole dataset


def test_profiles_are_frozen_and_replaceable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.QUICK.epochs = 100
    assert config.QUICK.replace(epochs=1).epochs == 1
    assert config.QUICK.epochs != 1 or config.QUICK.replace(epochs=2).epochs == 2


def test_seed_everything_repeats():
    config.seed_everything(5)
    a = torch.rand(3)
    config.seed_everything(5)
    assert torch.equal(a, torch.rand(3))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("forced", ["cuda", "cuda:0", " cuda "])
def test_forcing_cuda_without_cuda_is_one_clear_line(monkeypatch, forced):
    monkeypatch.setenv(config.DEVICE_ENV, forced)
    with pytest.raises(RuntimeError, match=r"asks for CUDA, but CUDA is not available") as err:
        config.device()
    assert "\n" not in str(err.value) and config.DEVICE_ENV in str(err.value)


def test_forcing_mps_without_mps_is_one_clear_line(monkeypatch):
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        pytest.skip("this machine has Apple MPS")
    monkeypatch.setenv(config.DEVICE_ENV, "mps")
    with pytest.raises(RuntimeError, match=r"asks for Apple MPS, but MPS is not available") as err:
        config.device()
    assert "\n" not in str(err.value) and config.DEVICE_ENV in str(err.value)


def test_forcing_a_missing_cuda_device_names_the_ones_there_are(monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    monkeypatch.setenv(config.DEVICE_ENV, f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(RuntimeError, match="asks for CUDA device") as err:
        config.device()
    assert "\n" not in str(err.value)


# --- COURSEPKG_PROFILE_OVERRIDES: shrinking a profile for a rehearsal ---------------------------


def test_overrides_change_only_the_named_budgets_with_their_types():
    from coursepkg.config import FULL, apply_overrides

    small = apply_overrides(FULL, "epochs=1, eval_subset=6.4e1, lr=0.05")
    assert (small.epochs, small.eval_subset, small.lr) == (1, 64, 0.05)
    assert isinstance(small.eval_subset, int) and small.name == "full"
    unchanged = {k: v for k, v in small.as_dict().items()
                 if k not in ("epochs", "eval_subset", "lr")}
    assert unchanged == {k: v for k, v in FULL.as_dict().items()
                         if k not in ("epochs", "eval_subset", "lr")}
    assert apply_overrides(FULL, "") is FULL


@pytest.mark.parametrize("spec", ["epoch=1", "epochs", "name=quick", "epochs=1.5", "lr=fast"])
def test_a_bad_override_names_the_variable(spec):
    from coursepkg.config import FULL, OVERRIDES_ENV, apply_overrides

    with pytest.raises(ValueError, match=OVERRIDES_ENV):
        apply_overrides(FULL, spec)


def test_profile_reads_the_overrides_from_the_environment(monkeypatch):
    from coursepkg.config import OVERRIDES_ENV, profile

    monkeypatch.setenv(OVERRIDES_ENV, "epochs=2")
    assert profile("full").epochs == 2 and profile("quick").epochs == 2
    monkeypatch.delenv(OVERRIDES_ENV)
    assert profile("quick") == config.QUICK and profile("full") == config.FULL


def test_an_override_of_a_budget_that_is_none_takes_the_annotated_type():
    from coursepkg.config import FULL, apply_overrides

    nullable = [f.name for f in dataclasses.fields(FULL)
                if getattr(FULL, f.name) is None and "int" in str(f.type)]
    assert nullable, "the full profile has whole-set budgets (None)"
    changed = apply_overrides(FULL, f"{nullable[0]}=256")
    assert getattr(changed, nullable[0]) == 256
    assert getattr(apply_overrides(changed, f"{nullable[0]}=none"), nullable[0]) is None
