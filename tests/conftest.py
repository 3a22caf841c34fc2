import os

import pytest
import torch
import torch.utils.deterministic

# Without a GPU the Triton kernels run in Triton's interpreter, which is read when a kernel is
# defined: set it before anything imports metafwp's Triton modules.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def nan_filled_allocations():
    """Fill every fresh ``torch.empty`` with NaN (as fla's tests do), so a read of memory that was
    never written shows up as NaN in the result instead of passing by luck."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(was_deterministic)
    torch.utils.deterministic.fill_uninitialized_memory = was_filling
