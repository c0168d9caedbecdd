"""The original networks through the data registry: the right checkpoints, requests and sizes."""

import pytest

from neurotut.data.download import is_cached
from neurotut.ffn import originals
from neurotut.ffn.model import count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_workshop = pytest.mark.skipif(not is_cached(originals.WORKSHOP_DATASET),
                                    reason="ffn-windows-models not in the data cache (neurotut data fill-cache)")
needs_fib25 = pytest.mark.skipif(not is_cached(originals.FIB25_DATASET),
                                 reason="google-ffn-fib25 not in the data cache (neurotut data fill-cache)")


@needs_workshop
@pytest.mark.parametrize("step", originals.WORKSHOP_STEPS)
def test_workshop_networks_load_with_their_step_and_request(step):
    model, global_step = originals.workshop_network(step)
    assert global_step == step
    assert model.config.fov_size == (17, 33, 33) and model.config.deltas == (4, 8, 8)
    assert count_parameters(model) == 472_353 and not model.training
    request = originals.workshop_request()
    assert (request.image_mean, request.image_stddev, request.seed_policy) == (131, 62, "PolicyPeaks")
    assert request.inference_options.min_segment_size == 1000


@needs_workshop
def test_unknown_workshop_step_is_refused():
    with pytest.raises(ValueError, match="2013116"):
        originals.workshop_network(5_000_000)


@needs_fib25
def test_fib25_network_and_request():
    model, global_step = originals.fib25_network()
    assert global_step == originals.FIB25_STEP
    assert model.config.depth == 12 and model.config.fov_size == (33, 33, 33)
    assert count_parameters(model) == 638_433
    assert originals.fib25_request().image_stddev == 33
