"""Reading the images a user gives (files of any common kind, arrays of any common pixel type) and checking them
before the network runs: one uint8 [H, W, 3] RGB array out, or one error naming the input and what is wrong.

data_generator.CocoPersons reads COCO's images here too (`as_stored=True`: the stored pixels its annotations
refer to, no EXIF orientation).
"""
import os

import cv2
import numpy as np

import config


class ImageReadError(IOError):
    """An image file is missing or cannot be decoded; the message names the file."""


class UnusableImageError(ImageReadError):
    """An image that was read but cannot be used (too small, unsupported pixel type); the message says why."""


def to_rgb_uint8(image, name='image'):
    """Any common image array -> uint8 [H, W, 3] RGB.

    Accepts [H, W] or [H, W, 1] grey, [H, W, 3] RGB, [H, W, 4] RGBA (composited over config.ALPHA_BACKGROUND);
    uint8, uint16 (scaled by 255/65535) or float (0..1, clipped). Raises UnusableImageError naming `name`.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise UnusableImageError('%s has shape %s: expected [H, W] grey, [H, W, 3] RGB or [H, W, 4] RGBA'
                                 % (name, image.shape))
    if image.dtype == np.uint8:
        values = image.astype(np.float32) if image.ndim == 3 and image.shape[2] == 4 else image
    elif image.dtype == np.uint16:
        values = image.astype(np.float32) * (255.0 / 65535.0)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise UnusableImageError('%s holds NaN or infinite pixel values' % name)
        values = np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0
    else:
        raise UnusableImageError('%s has pixel type %s: expected uint8, uint16 or float' % (name, image.dtype))
    if values.ndim == 2:
        values = np.repeat(values[..., None], 3, axis=2)
    elif values.shape[2] == 4:
        alpha = values[..., 3:].astype(np.float32) / 255.0
        background = np.asarray(config.ALPHA_BACKGROUND, np.float32)
        values = values[..., :3].astype(np.float32) * alpha + background * (1.0 - alpha)
    if values.dtype != np.uint8:
        values = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(values)


def check_size(image, name='image', min_side=None):
    """Raises UnusableImageError if the image's shorter side is below config.MIN_INPUT_SIDE."""
    min_side = config.MIN_INPUT_SIDE if min_side is None else min_side
    height, width = image.shape[:2]
    if min(height, width) < min_side:
        raise UnusableImageError('%s is only %dx%d px: at least %d px per side are needed to hold a person '
                                 '(config.MIN_INPUT_SIDE)' % (name, width, height, min_side))
    return image


def header_size(path):
    """(width, height) from the file's header without decoding it (Pillow, which scikit-image installs), or
    None if Pillow is missing or does not read the file (OpenCV may still)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we judge the size ourselves
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001  any file Pillow cannot parse: OpenCV decides
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def check_image_header(path):
    """Judges an image file from its first bytes only, in milliseconds: demo.py checks every input this way
    before it loads the model. Raises ImageReadError naming the file if it is missing or no
    image format OpenCV reads starts like it (a text file, a video), UnusableImageError if its header gives
    a size above config.MAX_INPUT_PIXELS (decoding it could exhaust the memory). A file that passes may
    still fail to decode (truncated): read_image says so."""
    if not os.path.isfile(path):
        raise ImageReadError('%s does not exist' % path)
    if not cv2.haveImageReader(path):
        raise ImageReadError('%s is not an image: no image format OpenCV reads starts like it'
                                            % path)
    size = header_size(path)
    if size and size[0] * size[1] > config.MAX_INPUT_PIXELS:
        raise UnusableImageError(
            '%s is %dx%d px (%.0f megapixels), above config.MAX_INPUT_PIXELS (%.0f): shrink it first; the '
            'network sees it resized anyway' % (path, size[0], size[1], size[0] * size[1] / 1e6,
                                                config.MAX_INPUT_PIXELS / 1e6))



def read_image(path, as_stored=False):
    """uint8 [H, W, 3] RGB of an image file of any common kind (grey, RGBA, 16-bit, float TIFF).

    By default JPEG orientation (EXIF) is applied, as viewers show the picture, and the header is checked
    first (check_image_header): an image above config.MAX_INPUT_PIXELS is refused before decoding could exhaust
    the memory; a decoded image must pass check_size.
    as_stored=True keeps the stored pixels, which COCO's width, height and annotations refer to (an EXIF
    rotation would move them away from their annotations), without the checks meant for users' inputs.
    Raises ImageReadError naming the file if it is missing or cannot be decoded, and UnusableImageError if it is
    too small, too large or of an unsupported pixel type.
    """
    if not os.path.isfile(path):
        raise ImageReadError('image %s is missing' % path)
    if not as_stored:
        check_image_header(path)
    data = np.fromfile(path, np.uint8)
    # IMREAD_COLOR | ANYDEPTH keeps 16 bits and applies EXIF orientation; only IMREAD_UNCHANGED keeps alpha.
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | (cv2.IMREAD_IGNORE_ORIENTATION if as_stored else 0)
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None or image.size == 0:
        raise ImageReadError(
            '%s cannot be decoded: not an image OpenCV reads, truncated, or above its limit of 2^30 pixels'
            % path)
    if data[:2].tobytes() != b'\xff\xd8':  # JPEG has no alpha: skip the second decode
        unchanged = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if unchanged is not None and unchanged.ndim == 3 and unchanged.shape[2] == 4:
            image = to_rgb_uint8(cv2.cvtColor(unchanged, cv2.COLOR_BGRA2RGBA), path)
            return image if as_stored else check_size(image, path)
    image = to_rgb_uint8(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), path)
    return image if as_stored else check_size(image, path)
