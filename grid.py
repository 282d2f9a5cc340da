"""The output grid of an input image, and padding an image onto it (no TensorFlow).

The network's output cell (i, j) sits at input pixel (x, y) = (j*s, i*s) for output stride s (config.py's
convention). Only an input side of n*s + 1 puts the last cell on the last pixel: on other sides the backbone's
SAME-padded max pool shifts the features against the targets by a fraction of a stride. So training crops are
n*s + 1 px square (check_input_size), and images of any size are padded bottom/right to such sides
(pad_to_grid) before the network sees them; an input of side H gives H' = (H - 1) // s + 1 output cells.
"""
import cv2

import settings


def output_size(side, stride):
    """Number of output cells along an input side of `side` px: (side - 1) // stride + 1 (ints)."""
    return (side - 1) // stride + 1


def grid_shape(input_shape, stride):
    """Output-grid (H', W') ints of an input of (H, W[, C]) px at stride s: ((H - 1) // s + 1, (W - 1) // s + 1)."""
    return output_size(input_shape[0], stride), output_size(input_shape[1], stride)


def on_grid(side, stride):
    """True if an input side of `side` px is n*stride + 1 with n >= 1."""
    return side >= stride + 1 and (side - 1) % stride == 0


def grid_sides_near(side, stride):
    """The n*stride + 1 sides (n >= 1) at or just below `side` and the next one: (int or None, int)."""
    below = (side - 1) // stride * stride + 1
    return (below, below + stride) if below > stride else (None, stride + 1)


def check_input_size(input_size, stride):
    """ValueError unless input_size = n*stride + 1 with n >= 1 (see the module docstring for why).

    A silent misalignment would cost a whole training run.
    """
    if not on_grid(input_size, stride):
        below, above = grid_sides_near(input_size, stride)
        sizes = ('%d or %d' % (below, above)) if below else str(above)
        raise ValueError('input_size must be n*stride+1 (n >= 1) so the output grid meets the input pixels as the '
                         'targets assume; got %d at stride %d: use %s' % (input_size, stride, sizes))


def pad_amount(side, stride):
    """Pixels to add after a side of `side` px to reach the next n*stride + 1: int, or a tensor for a tensor
    side (the exported graph pads with it)."""
    return (stride - (side - 1) % stride) % stride


def padded_shape(image_shape, stride):
    """(int, int): the smallest (n_h*s + 1, n_w*s + 1) that holds an (H, W[, C]) image."""
    return tuple(side + pad_amount(side, stride) for side in image_shape[:2])


def pad_to_grid(image, stride, options=None):
    """Pads bottom/right with options.PAD_VALUE to the padded_shape sides (the image itself if already so).

    Args:
      image: [H, W, C] array.
    Returns:
      [H_pad, W_pad, C] array, H_pad and W_pad of padded_shape.
    """
    options = settings.resolve(options)
    height, width = image.shape[:2]
    out_height, out_width = padded_shape(image.shape, stride)
    if (out_height, out_width) == (height, width):
        return image
    return cv2.copyMakeBorder(image, 0, out_height - height, 0, out_width - width, cv2.BORDER_CONSTANT,
                              value=tuple(float(v) for v in options.PAD_VALUE))
