"""``dltrain eval``'s per-class report against scikit-learn's classification_report."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import confusion_matrix

from dltrain.evaluate import classification_report

K, N = 5, 97
NAMES = ["ant", "bee", "cat", "dog", "eel"]
NEVER_PREDICTED, NEVER_TRUE = 1, 3


def logits_and_labels(seed: int):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(N, K, generator=g)
    out[:, NEVER_PREDICTED] -= 100.0  # has support, never predicted: precision 0/0
    y = torch.randint(0, K - 1, (N,), generator=g)
    y[y >= NEVER_TRUE] += 1  # predicted, never true: support 0, recall 0/0
    return out, y


@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_report_matches_scikit_learn(seed):
    out, y = logits_and_labels(seed)
    pred = out.argmax(1)
    assert NEVER_PREDICTED not in pred.tolist() and NEVER_PREDICTED in y.tolist()
    assert NEVER_TRUE in pred.tolist() and NEVER_TRUE not in y.tolist()

    got = classification_report(out, y, NAMES)
    want = sk_report(y.numpy(), pred.numpy(), labels=list(range(K)), target_names=NAMES,
                     output_dict=True, zero_division=0)

    assert list(got["per_class"]) == NAMES == got["class_names"]
    for name in NAMES:
        row, ref = got["per_class"][name], want[name]
        assert row["support"] == ref["support"], name
        for key, ref_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert row[key] == pytest.approx(ref[ref_key], abs=1e-12), (name, key)
    assert got["macro_f1"] == pytest.approx(want["macro avg"]["f1-score"], abs=1e-12)
    assert got["confusion_matrix"] == confusion_matrix(y.numpy(), pred.numpy(),
                                                       labels=list(range(K))).tolist()


def test_classes_without_names_are_numbered():
    out, y = logits_and_labels(2)
    assert list(classification_report(out, y, ())["per_class"]) == [str(i) for i in range(K)]
