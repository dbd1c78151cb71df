"""coursepkg.zoo: cache hits, keys, atomic saves, corrupt files retrained, only tensors unpickled."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from coursepkg import zoo
from coursepkg.config import profile as get_profile
from coursepkg.models import SmallCNN
from coursepkg.train import train

FIT_CALLS: list[dict] = []


def _fit_tiny(model, info, profile, device, *, seed=0, width=4):
    """Train a tiny CNN on a few random images (fast; enough to change the weights)."""
    FIT_CALLS.append({"width": width, "profile": profile.name})
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    log = train(model, x, y, epochs=1, batch_size=16, device=device, progress=False)
    return {"final_loss": log.epoch_loss[-1]}


@pytest.fixture(autouse=True)
def tiny_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    zoo.register("tiny-test", build=lambda info, width=4: SmallCNN(info, width=width, hidden=8),
                 defaults={"width": 4})(_fit_tiny)
    FIT_CALLS.clear()
    yield
    zoo._RECIPES.pop("tiny-test", None)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_second_get_is_a_cache_hit():
    first = zoo.get("tiny-test", device="cpu")
    assert len(FIT_CALLS) == 1 and not first.training
    assert zoo.cached("tiny-test")
    second = zoo.get("tiny-test", device="cpu")
    assert len(FIT_CALLS) == 1, "the second call must load, not train"
    torch.testing.assert_close(_weights(first), _weights(second))
    assert second.zoo_facts["final_loss"] == pytest.approx(first.zoo_facts["final_loss"])
    assert "train_seconds" in second.zoo_facts


def test_the_key_covers_profile_hyperparameters_and_seed():
    paths = {
        zoo.checkpoint_path(zoo.configuration("tiny-test", profile="quick")),
        zoo.checkpoint_path(zoo.configuration("tiny-test", profile="full")),
        zoo.checkpoint_path(zoo.configuration("tiny-test", profile="quick", width=6)),
        zoo.checkpoint_path(zoo.configuration("tiny-test", profile="quick", seed=1)),
        zoo.checkpoint_path(zoo.configuration("tiny-test", dataset="mnist", profile="quick")),
    }
    assert len(paths) == 5
    zoo.get("tiny-test", device="cpu", width=6)
    assert FIT_CALLS == [{"width": 6, "profile": "quick"}]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_checkpoint_is_reported_and_retrained(damage):
    zoo.get("tiny-test", device="cpu")
    path = zoo.checkpoint_path(zoo.configuration("tiny-test"))
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": os.urandom(300), "empty": b""}[damage])
    with pytest.warns(RuntimeWarning, match="retraining"):
        model = zoo.get("tiny-test", device="cpu")
    assert len(FIT_CALLS) == 2 and not model.training
    zoo.get("tiny-test", device="cpu")  # the rewritten file loads again
    assert len(FIT_CALLS) == 2


class Payload:
    """An object whose unpickling would run code: weights_only must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/coursepkg-pwned",))


def test_nothing_but_tensors_is_unpickled(tmp_path):
    zoo.get("tiny-test", device="cpu")
    path = zoo.checkpoint_path(zoo.configuration("tiny-test"))
    marker = "/tmp/coursepkg-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": Payload(), "config": "{}", "facts": "{}"}, fh)
    with pytest.warns(RuntimeWarning, match="retraining"):
        zoo.get("tiny-test", device="cpu")
    assert not os.path.exists(marker)


def test_saves_are_atomic_and_leave_no_temporary_files():
    zoo.get("tiny-test", device="cpu")
    folder = zoo.checkpoint_path(zoo.configuration("tiny-test")).parent
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_models_come_back_frozen_and_in_eval_mode():
    model = zoo.get("tiny-test", device="cpu")
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_unknown_recipe_and_hyperparameter():
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        zoo.get("nope")
    with pytest.raises(ValueError, match="no hyperparameter"):
        zoo.get("tiny-test", depth=3)


def test_unwritable_cache_directory_is_one_clear_line(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(zoo.CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(PermissionError, match="COURSEPKG_CACHE") as err:
        zoo.cache_dir()
    assert "\n" not in str(err.value)


def test_the_standard_recipe_is_registered():
    assert "standard" in zoo.recipes()
    assert zoo.recipe("standard").defaults["width"] == 16


# --------------------------------------------------------------------------------------
# uses=: a recipe sees, and is keyed by, only the profile fields it declares
# --------------------------------------------------------------------------------------
SEEN_PROFILES: list = []


@pytest.fixture
def epochs_only_recipe():
    """A recipe that declares uses=("epochs",); its fit records the profile it was given and
    reads whatever field the test puts in ``reads``."""
    name, reads = "uses-epochs-test", ["epochs"]

    def fit(model, info, profile, device, *, seed=0, width=4):
        SEEN_PROFILES.append(profile)
        return {field: getattr(profile, field) for field in reads}

    zoo.register(name, build=lambda info, width=4: SmallCNN(info, width=width, hidden=8),
                 defaults={"width": 4}, uses=("epochs",))(fit)
    SEEN_PROFILES.clear()
    yield name, reads
    zoo._RECIPES.pop(name, None)


def test_a_recipe_with_uses_gets_a_view_of_its_declared_fields(epochs_only_recipe):
    name, _ = epochs_only_recipe
    model = zoo.get(name, profile="quick", device="cpu")
    (view,) = SEEN_PROFILES
    assert isinstance(view, zoo.ProfileView)
    assert view.name == "quick" and view.epochs == get_profile("quick").epochs
    assert view.profile is get_profile("quick")  # the whole profile, for the recipes it depends on
    assert model.zoo_facts["epochs"] == view.epochs
    with pytest.raises(AttributeError, match=r"'lr'.*uses=") as err:
        _ = view.lr
    assert "\n" not in str(err.value) and name in str(err.value)


def test_reading_an_undeclared_field_in_fit_fails_and_caches_nothing(epochs_only_recipe):
    name, reads = epochs_only_recipe
    reads.append("eval_subset")
    with pytest.raises(AttributeError, match=r"'eval_subset'.*uses="):
        zoo.get(name, profile="quick", device="cpu")
    assert not zoo.cached(name, profile="quick")


def test_only_the_declared_fields_key_the_checkpoint(epochs_only_recipe):
    name, _ = epochs_only_recipe
    quick = get_profile("quick")
    config = zoo.configuration(name, profile=quick)
    assert config["profile"] == {"name": "quick", "epochs": quick.epochs}
    # a budget of another chapter changes: same key for this recipe, a new one for a recipe without uses=
    other = quick.replace(eval_subset=quick.eval_subset + 1)
    assert zoo.checkpoint_path(zoo.configuration(name, profile=other)) == zoo.checkpoint_path(config)
    assert (zoo.checkpoint_path(zoo.configuration("tiny-test", profile=other))
            != zoo.checkpoint_path(zoo.configuration("tiny-test", profile=quick)))
    # a declared field changes: a new key
    more = quick.replace(epochs=quick.epochs + 1)
    assert zoo.checkpoint_path(zoo.configuration(name, profile=more)) != zoo.checkpoint_path(config)


def test_unknown_fields_in_uses_are_refused_at_registration():
    with pytest.raises(ValueError, match=r"uses=.*'no_such_budget'"):
        zoo.register("uses-typo-test", build=lambda info: SmallCNN(info), uses=("epochs", "no_such_budget"))(
            _fit_tiny)
    assert "uses-typo-test" not in zoo._RECIPES


def test_train_all_trains_then_loads_and_reports_each_recipe(tmp_path):
    first = zoo.train_all(["tiny-test"], profile="quick")
    second = zoo.train_all(["tiny-test"], profile="quick")
    assert [r["name"] for r in first] == ["tiny-test"]
    assert first[0]["cached"] is False and second[0]["cached"] is True
    # the second run reports the training time recorded by the first, not its load time
    assert second[0]["train_seconds"] == first[0]["train_seconds"] >= 0.0


def test_the_command_line_refuses_an_unknown_recipe(capsys):
    with pytest.raises(SystemExit):
        zoo.main(["no-such-recipe"])
    assert "unknown recipe" in capsys.readouterr().err
