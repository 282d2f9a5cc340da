"""grid.py: the output grid of an input and the padding onto it, on real COCO images.

What it proves: pad_to_grid pads real images bottom/right to the smallest n*stride+1 sides with the run's
PAD_VALUE (taken from the settings passed, not from config), keeps every source pixel, and its output grid is
grid_shape's; pad_amount gives the same padding for arrays of sides (as the exported graph uses it on tensors);
the n*stride+1 rule accepts exactly those sides and names the nearest good ones.
"""
import glob
import os

import numpy as np
import pytest

import config
import grid
import settings
from images import read_image


@pytest.mark.parametrize('stride', [8, 16])
def test_pad_to_grid_pads_real_images_to_the_smallest_grid_sides(coco_sample, stride):
    paths = sorted(glob.glob(os.path.join(coco_sample['val_images'], '*.jpg')))[:4]
    assert paths
    options = settings.make(overrides={'PAD_VALUE': (7, 8, 9)})
    for path in paths:
        image = read_image(path)
        height, width = image.shape[:2]
        padded = grid.pad_to_grid(image, stride, options=options)
        out_height, out_width = padded.shape[:2]
        assert (out_height, out_width) == grid.padded_shape(image.shape, stride)
        assert grid.on_grid(out_height, stride) and grid.on_grid(out_width, stride)
        # The smallest such sides: one stride less would cut the image.
        assert out_height - stride < height <= out_height and out_width - stride < width <= out_width
        np.testing.assert_array_equal(padded[:height, :width], image)
        assert (padded[height:] == (7, 8, 9)).all() and (padded[:, width:] == (7, 8, 9)).all()
        assert grid.grid_shape(padded.shape, stride) == ((out_height - 1) // stride + 1,
                                                         (out_width - 1) // stride + 1)
        # Without settings, config.py's PAD_VALUE.
        default = grid.pad_to_grid(image, stride)
        pad_value = np.asarray(config.PAD_VALUE, np.uint8)
        assert (default[height:] == pad_value).all() and (default[:, width:] == pad_value).all()


def test_an_image_already_on_the_grid_is_returned_unchanged(coco_sample):
    image = read_image(sorted(glob.glob(os.path.join(coco_sample['train_images'], '*.jpg')))[0])
    crop = image[:129, :97]
    assert grid.pad_to_grid(crop, 16) is crop and grid.pad_to_grid(crop, 8) is crop


def test_pad_amount_works_on_arrays_of_sides_as_on_ints():
    sides = np.arange(1, 300)
    for stride in (4, 8, 16, 32):
        amounts = grid.pad_amount(sides, stride)
        assert list(amounts) == [grid.pad_amount(int(side), stride) for side in sides]
        assert all(grid.on_grid(int(side + amount), stride) for side, amount in zip(sides, amounts) if side > 1)
        assert (amounts < stride).all()


def test_the_input_size_rule():
    assert grid.on_grid(129, 16) and grid.on_grid(401, 16) and grid.on_grid(17, 16)
    assert not grid.on_grid(128, 16) and not grid.on_grid(1, 16) and not grid.on_grid(400, 16)
    assert grid.grid_sides_near(400, 16) == (385, 401)
    assert grid.grid_sides_near(10, 16) == (None, 17)
    grid.check_input_size(801, 16)
    with pytest.raises(ValueError, match=r'input_size must be n\*stride\+1.*400 at stride 16.*385 or 401'):
        grid.check_input_size(400, 16)
    with pytest.raises(ValueError, match=r'got 10 at stride 16: use 17$'):
        grid.check_input_size(10, 16)
    assert grid.output_size(401, 16) == 26 and grid.output_size(401, 8) == 51
