"""What the evaluation report says about the discriminators, from the measured accuracies and chance."""
import pytest

from marn_tf.evaluation.report import discriminator_reading


@pytest.mark.parametrize("d1, ds, chance, expected", [
    (0.27, 0.93, 0.25, "D1 accuracy 0.27 vs chance 0.25, near chance: the invariant vectors hide their modality; "
                       "Ds accuracy 0.93, above chance: the specific vectors keep their modality."),
    (0.19, 0.93, 0.25, "near chance: the invariant vectors hide"),  # 0.06 below: within the tolerance
    (0.05, 0.93, 0.25, "far below chance: the encoder is fooling D1 by swapping modalities, not hiding them"),
    (0.45, 0.30, 0.25, "above chance: the invariant vectors still carry their modality; Ds accuracy 0.30, not above "
                       "chance: the specific vectors lost their modality."),
    (0.40, 0.97, 1 / 3, "D1 accuracy 0.40 vs chance 0.33, near chance"),
    (0.41, 0.97, 1 / 3, "0.33, above chance"),
    (0.41, 0.97, 0.36, "D1 accuracy 0.41 vs chance 0.36, near chance"),  # modalities present unequally often
])
def test_the_reading_follows_the_values_against_chance(d1, ds, chance, expected):
    assert expected in discriminator_reading(d1, ds, chance)
