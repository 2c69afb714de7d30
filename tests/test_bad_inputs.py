"""Learners' mistakes get a clear ValueError/TypeError naming the argument and the fix.

One table of bad inputs across the public API (the data, loss, metric and CLI modules test
their own corner cases in more depth).
"""

import numpy as np
import pytest
import torch

import nhl
from nhl import data, losses, metrics
from nhl.retrieval import HammingIndex

Q = np.ones((3, 8))
DB = np.ones((5, 8))
QL = np.array([[1, 0], [0, 1], [1, 0]])
DBL = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 1]])
CSQ = losses.build("csq", 8, 2, 10)

CASES = {
    "bit list unsorted": (lambda: nhl.NestedHashLayer(4, (16, 8)), "sorted in increasing order"),
    "bit list float": (lambda: nhl.NestedHashLayer(4, (8.0,)), "write 8"),
    "codes real-valued": (lambda: metrics.mean_average_precision(Q * 0.3, DB, QL, DBL), "nhl.binarize"),
    "code lengths differ": (lambda: metrics.mean_average_precision(Q, np.ones((5, 16)), QL, DBL), "same code length"),
    "empty query": (lambda: metrics.mean_average_precision(Q[:0], DB, QL[:0], DBL), "q_codes is empty"),
    "empty database": (lambda: metrics.mean_average_precision(Q, DB[:0], QL, DBL[:0]), "db_codes is empty"),
    "topk < 1": (lambda: metrics.mean_average_precision(Q, DB, QL, DBL, topk=0), "topk must be >= 1"),
    "labels 1-D": (lambda: metrics.mean_average_precision(Q, DB, np.array([0, 1, 0]), DBL), "one-hot encode"),
    "labels not 0/1": (lambda: metrics.mean_average_precision(Q, DB, QL * 2, DBL), "0/1 multi-hot"),
    "labels do not match codes": (lambda: metrics.mean_average_precision(Q, DB, QL[:2], DBL), "they must match"),
    "unknown tie mode": (lambda: metrics.mean_average_precision(Q, DB, QL, DBL, ties="random"), "average, index"),
    "unknown method": (lambda: losses.build("hashnet", 8, 2, 10), "csq, dbdh, dch"),
    "labels do not match batch": (lambda: CSQ(torch.randn(4, 8), torch.ones(3, 2), torch.arange(4)), "(4, 2)"),
    "loss labels 1-D": (lambda: CSQ(torch.randn(4, 8), torch.ones(4), torch.arange(4)), "one_hot"),
    "outputs of wrong length": (lambda: CSQ(torch.randn(4, 16), torch.ones(4, 2), torch.arange(4)), "(batch, 8)"),
    "unknown dataset": (lambda: data.load_splits("mnist"), "fashion-mnist, cifar10"),
    "unknown protocol": (lambda: data.load_splits("digits", protocol="cifar10"), "default, quick"),
    "index of real values": (lambda: HammingIndex(Q * 0.5), "nhl.binarize"),
    "search k < 1": (lambda: HammingIndex(DB).search(Q, 0), "k must be >= 1"),
    "search with longer queries": (lambda: HammingIndex(DB).search(np.ones((2, 16)), 1), "queries[:, :8]"),
    "epochs < 1": (lambda: nhl.TrainConfig(epochs=0), "epochs must be >= 1"),
    "unknown weighting": (lambda: nhl.TrainConfig(weighting="dyn"), "dominance, uniform"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, message = CASES[name]
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    assert message in str(err.value)
