"""The results store (coursepkg.evaluate.store): keys that change with every ingredient, hits
that return the very same per-image results, and corrupt or stale files recomputed."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

from coursepkg.adaptive import EOT
from coursepkg.attacks import fgsm, pgd
from coursepkg.evaluate import adversarial_examples, randomised_robust_accuracy, robust_accuracy, store
from coursepkg.evaluate.detection import evasion


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEPKG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(store.STORE_ENV, raising=False)


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()


def data(seed: int = 1, n: int = 24):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def attacks(steps: int = 5):
    return {"FGSM": fgsm, "PGD": functools.partial(pgd, steps=steps, restarts=2)}


def key(model, x, y, atk, seed=0, **kw):
    return store.key_for("robust_accuracy", model, list(atk.items()), x, y, sorted(kw.items()), seed)


def stored_files():
    return sorted(store.store_dir().rglob("*.pt")) if store.store_dir().exists() else []


class Noisy(nn.Module):
    """A random model: its logits carry fresh noise on every call (global generator)."""

    def __init__(self, inner: nn.Module, scale: float):
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x):
        out = self.inner(x)
        return out + self.scale * torch.randn_like(out)


# --- keys ---------------------------------------------------------------------------------
def test_key_changes_with_every_ingredient(monkeypatch):
    x, y = data()
    model, base = linear(), key(linear(), x, y, attacks(), eps=0.1)
    assert key(linear(), x, y, attacks(), eps=0.1) == base  # same ingredients, same key
    changed = linear()
    with torch.no_grad():
        changed[1].weight[0, 0] += 1e-6  # one weight, by one part in a million
    x2 = x.clone()
    x2[3, 0, 0, 0] = 1.0 - x2[3, 0, 0, 0]
    keys = {
        "weight": key(changed, x, y, attacks(), eps=0.1),
        "budget (eps)": key(model, x, y, attacks(), eps=0.2),
        "budget (steps)": key(model, x, y, attacks(steps=6), eps=0.1),
        "images": key(model, x2, y, attacks(), eps=0.1),
        "image subset": key(model, x[:-1], y[:-1], attacks(), eps=0.1),
        "labels": key(model, x, (y + 1) % 3, attacks(), eps=0.1),
        "seed": key(model, x, y, attacks(), seed=1, eps=0.1),
        "wrapping": key(EOT(model, 4), x, y, attacks(), eps=0.1),
        "wrapping's setting": key(EOT(model, 5), x, y, attacks(), eps=0.1),
    }
    assert base not in keys.values()
    assert len(set(keys.values())) == len(keys)
    monkeypatch.setattr(store, "source_digest", lambda: "another version of the package")
    assert key(model, x, y, attacks(), eps=0.1) != base


def test_key_reads_the_globals_a_notebook_function_uses():
    x, y = data()
    namespace = {"pgd": pgd, "STEPS": 3}
    exec("def my_attack(m, x, y, eps):\n    return pgd(m, x, y, eps=eps, steps=STEPS)", namespace)
    first = key(linear(), x, y, {"mine": namespace["my_attack"]}, eps=0.1)
    namespace["STEPS"] = 4
    assert key(linear(), x, y, {"mine": namespace["my_attack"]}, eps=0.1) != first


def test_what_cannot_be_read_exactly_is_not_stored():
    class Opaque:  # a callable object: its state is not something the store can read
        def __call__(self, model, x, y, eps):
            return x

    x, y = data()
    assert key(linear(), x, y, {"opaque": Opaque()}, eps=0.1) is None
    result = robust_accuracy(linear(), x, y, {"opaque": Opaque()}, eps=0.1)
    assert not result.from_store and stored_files() == []


# --- hits -----------------------------------------------------------------------------------
def test_a_hit_returns_identical_per_image_results():
    x, y = data()
    first = robust_accuracy(linear(), x, y, attacks(), eps=0.3)
    assert not first.from_store and len(stored_files()) == 1
    again = robust_accuracy(linear(), x, y, attacks(), eps=0.3)
    assert again.from_store
    assert torch.equal(first.correct, again.correct)
    assert torch.equal(first.clean_mask, again.clean_mask)
    assert all(torch.equal(first.per_attack_mask[k], again.per_attack_mask[k]) for k in attacks())
    assert first.fooled_by == again.fooled_by
    assert torch.equal(first.x_adv, again.x_adv)
    assert first.per_attack == again.per_attack
    assert 0 < first.robust_accuracy < first.clean_accuracy  # the attacks did break some images


def test_the_same_attacks_under_other_names_read_back_under_the_new_names():
    x, y = data()
    first = robust_accuracy(linear(), x, y, attacks(), eps=0.3)
    renamed = dict(zip(["one step", "many steps"], attacks().values()))
    again = robust_accuracy(linear(), x, y, renamed, eps=0.3)
    assert again.from_store and list(again.per_attack) == ["one step", "many steps"]
    assert again.per_attack["many steps"] == first.per_attack["PGD"]
    assert {f for f in again.fooled_by} <= {None, "one step", "many steps"}
    swapped = dict(reversed(list(attacks().items())))  # another order: another question
    assert not robust_accuracy(linear(), x, y, swapped, eps=0.3).from_store


def test_seeded_evaluation_leaves_the_callers_generator_alone():
    x, y, model = *data(), linear()
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    robust_accuracy(model, x, y, attacks(), eps=0.3)  # computed
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(11)
    robust_accuracy(model, x, y, attacks(), eps=0.3)  # read back
    assert torch.equal(torch.rand(3), expected)


def test_a_seeded_evaluation_is_a_function_of_its_seed(monkeypatch):
    monkeypatch.setenv(store.STORE_ENV, "off")  # compute both times
    x, y = data(n=60)
    noisy = Noisy(linear(), 2.0)
    one = robust_accuracy(noisy, x, y, attacks(), eps=0.2, seed=3)
    torch.manual_seed(99)  # whatever the caller's generator holds
    two = robust_accuracy(noisy, x, y, attacks(), eps=0.2, seed=3)
    assert torch.equal(one.correct, two.correct) and torch.equal(one.x_adv, two.x_adv)
    assert stored_files() == []


def test_store_off_and_seed_none_store_nothing(monkeypatch):
    x, y = data()
    robust_accuracy(linear(), x, y, attacks(), eps=0.3, seed=None)
    assert stored_files() == []
    monkeypatch.setenv(store.STORE_ENV, "off")
    robust_accuracy(linear(), x, y, attacks(), eps=0.3)
    assert stored_files() == []


def test_bad_seed_is_refused():
    x, y = data()
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        robust_accuracy(linear(), x, y, attacks(), eps=0.3, seed=-1)


# --- corrupt and stale files -----------------------------------------------------------------
def test_a_corrupt_file_is_recomputed_and_replaced():
    x, y = data()
    first = robust_accuracy(linear(), x, y, attacks(), eps=0.3)
    (path,) = stored_files()
    path.write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unreadable, recomputing"):
        again = robust_accuracy(linear(), x, y, attacks(), eps=0.3)
    assert not again.from_store and torch.equal(first.correct, again.correct)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert robust_accuracy(linear(), x, y, attacks(), eps=0.3).from_store  # rewritten


def test_a_file_holding_another_result_is_recomputed():
    x, y = data()
    robust_accuracy(linear(), x, y, attacks(), eps=0.3)
    (path,) = stored_files()
    payload = torch.load(path, weights_only=True)
    payload["key"] = "0" * 64
    torch.save(payload, path)
    with pytest.warns(RuntimeWarning, match="holds another result"):
        assert not robust_accuracy(linear(), x, y, attacks(), eps=0.3).from_store


# --- the other engines ---------------------------------------------------------------------
def test_randomised_evaluation_hit_is_identical():
    x, y = data(n=30)
    noisy = Noisy(linear(), 1.0)
    first = randomised_robust_accuracy(noisy, x, y, attacks(), k=4, eps=0.2)
    again = randomised_robust_accuracy(noisy, x, y, attacks(), k=4, eps=0.2)
    assert again.from_store and not first.from_store
    assert torch.equal(first.clean.share, again.clean.share)
    for name in attacks():
        assert torch.equal(first.per_attack[name].share, again.per_attack[name].share)
        assert torch.equal(first.x_adv[name], again.x_adv[name])
    assert torch.equal(first.correct("worst"), again.correct("worst"))


def test_evasion_hit_is_identical():
    x, y = data(n=30)
    joined = nn.Sequential(linear(), nn.ConstantPad1d((0, 1), -1.0)).eval()  # a never-flagging detector
    first = evasion(joined, x, y, attacks(), eps=0.3)
    again = evasion(joined, x, y, attacks(), eps=0.3)
    assert again.from_store and not first.from_store
    assert torch.equal(first.evaded, again.evaded) and torch.equal(first.x_adv, again.x_adv)
    assert first.per_attack == again.per_attack and first.fooled_by == again.fooled_by
    assert first.success.value > 0


def test_crafted_examples_are_kept_and_read_back():
    x, y = data()
    pgd5 = functools.partial(pgd, steps=5, restarts=1)
    first = adversarial_examples(pgd5, linear(), x, y, eps=0.2)
    assert len(stored_files()) == 1
    again = adversarial_examples(pgd5, linear(), x, y, eps=0.2)
    assert torch.equal(first, again) and len(stored_files()) == 1
    other = adversarial_examples(pgd5, linear(), x, y, eps=0.2, seed=1)  # another random start
    assert len(stored_files()) == 2 and not torch.equal(first, other)
    assert (first - x).abs().max() <= 0.2 + 1e-6


def test_transfer_matrix_is_read_back_and_recomputed_when_a_target_changes(monkeypatch):
    from coursepkg.evaluate import transfer

    x, y = data(n=30)
    calls = []
    craft = transfer._craft
    monkeypatch.setattr(transfer, "_craft", lambda *a: calls.append(1) or craft(*a))
    pgd5 = functools.partial(pgd, steps=5, restarts=1)
    sources = {"a": linear(0), "b": linear(1)}
    targets = {"a": sources["a"], "noisy": Noisy(linear(2), 1.0)}

    def matrix(targets, k=3):
        return transfer.transfer_matrix(sources, targets, x, y, eps=0.3, attack=pgd5,
                                        draws={"noisy": k})

    first, again = matrix(targets), matrix(targets)
    assert len(calls) == 2  # one crafting per source, the first time only
    assert torch.equal(first.successes, again.successes)
    assert torch.equal(first.trials, again.trials)
    assert first.successes[0, 0] > 0  # white-box PGD fools the linear model at 0.3
    matrix({"a": targets["a"], "noisy": Noisy(linear(3), 1.0)})  # another weight
    assert len(calls) == 4
    matrix(targets, k=5)  # more draws: another question
    assert len(calls) == 6
