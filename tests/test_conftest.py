import torch


def test_fresh_allocations_are_nan():
    """The autouse fixture really poisons fresh memory (otherwise the NaN checks prove nothing)."""
    assert torch.isnan(torch.empty(64)).all()
    assert torch.isnan(torch.zeros(2, 3).new_empty(5)).all()
