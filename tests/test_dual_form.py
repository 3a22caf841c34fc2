"""The dual form against the trained network itself (float64): every layer's output on new inputs,
rebuilt from its initial weights and recorded training inputs and gradients, equals the layer's
output after plain SGD, momentum 0.9, weight decay, both together, gradient clipping and a learning
rate schedule, to 1e-10; Adam is refused, or measured by its residual; bad input."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from metafwp.analysis import DualFormRecorder

LAYERS = ["0", "2", "4"]


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def data(seed, n=24):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,), generator=gen)


def train(model, optimizer, recorder, steps=25, clip=None, scheduler=None):
    for step in range(steps):
        x, y = data(step)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        recorder.end_step()
        if scheduler is not None:
            scheduler.step()


def layer_inputs(model, x) -> dict[str, torch.Tensor]:
    """Each linear layer's input when the trained network reads ``x``."""
    seen, handles = {}, []
    for name in LAYERS:
        handles.append(model.get_submodule(name).register_forward_hook(
            lambda m, inputs, out, name=name: seen.__setitem__(name, inputs[0])))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return seen


SETTINGS = {
    "sgd": (dict(lr=0.1), None, False),
    "momentum": (dict(lr=0.05, momentum=0.9), None, False),
    "weight decay": (dict(lr=0.1, weight_decay=0.05), None, False),
    "momentum and weight decay": (dict(lr=0.05, momentum=0.9, weight_decay=0.05), None, False),
    "clipping": (dict(lr=0.1, momentum=0.9), 0.05, False),
    "schedule": (dict(lr=0.1, momentum=0.5, weight_decay=0.01), 0.1, True),
}


@pytest.mark.parametrize("name", SETTINGS)
def test_every_layer_is_its_initial_output_plus_attention_over_its_training_inputs(name):
    options, clip, schedule = SETTINGS[name]
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), **options)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 5, gamma=0.5) if schedule else None
    recorder = DualFormRecorder(model, optimizer)
    train(model, optimizer, recorder, clip=clip, scheduler=scheduler)
    if clip is not None:
        assert min(s.clip for s in recorder.steps["0"]) < 0.99, "the clipping should be active"
    for layer, x in layer_inputs(model, data(99, n=7)[0]).items():
        with torch.no_grad():
            trained = model.get_submodule(layer)(x)
        dual = recorder.dual_output(layer, x)
        assert (dual - trained).abs().max() < 1e-10 * max(1.0, trained.abs().max().item()), (name, layer)
    assert not torch.equal(model[0].weight, recorder.records["0"].weight), "the layer must have moved"


def test_adam_is_refused_or_measured_by_its_residual():
    model = mlp()
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    with pytest.raises(ValueError, match="Adam normalises its steps elementwise: the dual form is not exact; "
                                         "pass inexact=True"):
        DualFormRecorder(model, adam)
    recorder = DualFormRecorder(model, adam, inexact=True)
    train(model, adam, recorder, steps=10)
    x = layer_inputs(model, data(99, n=7)[0])["2"]
    assert recorder.residual("2", x).abs().max() > 1e-3


def test_bad_input():
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no nn.Linear layer named 7 in the model; its linear layers: 0, 2, 4"):
        DualFormRecorder(model, sgd, layers=["7"])
    with pytest.raises(ValueError, match="Nesterov"):
        DualFormRecorder(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True))
    recorder = DualFormRecorder(model, sgd, max_bytes=10_000)
    # 24 examples x (12 + 16, 16 + 16, 16 + 3 inputs and output gradients) x 8 bytes = 15,168
    with pytest.raises(ValueError, match="recording step 0 needs 15,168 bytes, more than max_bytes=10,000"):
        train(model, sgd, recorder, steps=1)
    recorder.close()
    recorder = DualFormRecorder(model, sgd)
    x, y = data(0)
    sgd.zero_grad()
    (F.cross_entropy(model(x), y) + model[2].weight.square().sum()).backward()   # a term the records miss
    sgd.step()
    with pytest.raises(ValueError, match="gradient is not the recorded errors' sum"):
        recorder.end_step()
