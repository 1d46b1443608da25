import numpy as np
import pytest
import torch

from zeroloss.data import digits_data, patch_data, sphere_data, teacher_labels, validate_inputs
from zeroloss.errors import ZerolossInputError


def test_sphere_data_is_unit_norm_with_requested_labels():
    X, y = sphere_data(n=20, d=5, seed=3, labels="random")
    assert torch.allclose(X.norm(dim=1), torch.ones(20, dtype=X.dtype), atol=1e-14)
    assert set(y.tolist()) <= {-1.0, 1.0}
    _, yg = sphere_data(n=20, d=5, seed=3, labels="gaussian")
    assert len(set(yg.tolist())) == 20


def test_teacher_labels_are_standardised_and_deterministic():
    X, _ = sphere_data(n=30, d=4, seed=0)
    y1, y2 = teacher_labels(X, seed=2), teacher_labels(X, seed=2)
    assert torch.equal(y1, y2)
    assert abs(float(y1.mean())) < 1e-12 and abs(float(y1.std()) - 1) < 1e-12


def test_patch_data_has_unit_frobenius_norm():
    X, _ = patch_data(n=4, channels=3, positions=6, seed=0)
    assert X.shape == (4, 3, 6)
    assert torch.allclose(X.flatten(1).norm(dim=1), torch.ones(4, dtype=X.dtype), atol=1e-14)


def test_digits_are_distinct_unit_vectors_in_64_dimensions():
    X, y = digits_data(n=100, seed=0)
    assert X.shape == (100, 64)
    assert torch.allclose(X.norm(dim=1), torch.ones(100, dtype=X.dtype), atol=1e-12)
    validate_inputs(X)  # no two parallel
    assert set(y.tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("X, match", [
    (np.array([[1.0, 0.0], [np.nan, 1.0]]), "X: contains NaN or inf"),
    (np.zeros((3,)), "X: must have shape"),
    (np.array([[2.0, 0.0], [0.0, 1.0]]), "X: Du et al.'s nets need unit-norm inputs; row 0 has norm 2"),
    (np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), "X: rows 0 and 2 are parallel"),
    (np.array([[1.0, 0.0], [-1.0, 0.0]]), "antiparallel"),
    (np.array([[0.0, 0.0], [1.0, 0.0]]), "row 0 is zero"),
])
def test_validation_names_the_problem(X, match):
    with pytest.raises(ZerolossInputError, match=match):
        validate_inputs(X)


def test_normalise_flag_projects_onto_the_sphere():
    X = validate_inputs(np.array([[3.0, 4.0], [0.0, 2.0]]), normalise=True)
    assert torch.allclose(X, torch.tensor([[0.6, 0.8], [0.0, 1.0]], dtype=torch.float64))
