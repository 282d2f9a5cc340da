"""PersonLab configuration: the one home of every hyperparameter and path.

Users experiment by editing this file; programs may override a few values from
the command line. Every value carries a one-line comment; [P] marks a value the
paper states, [I] one the public re-implementations use, [R] one recalled from
the paper, [C] a choice of this project (explained in README.md, "Choices").
See ../shared/PAPER.md for the method.

Coordinate convention (the whole project, stated once here)
------------------------------------------------------------
* Points and offsets are (x, y) pairs: x along image columns, y along rows.
  Arrays of points have a last axis of size 2 in that order; offset maps store
  channel 2*i as dx and channel 2*i+1 as dy of field i.
* Positions and offsets are float32 values in INPUT PIXELS, the pixel grid of
  the image the network sees (after augmentation or resizing), with pixel
  centres at integer coordinates: pixel (row r, col c) is the point (x=c, y=r).
  COCO keypoints are used as given, in this convention.
* Maps (heatmaps, offsets, masks) live on the OUTPUT GRID of a stride s. Cell
  (row i, col j) sits at input pixel (x=j*s, y=i*s) (TF-Slim/DeepLab alignment:
  an input of side n*s+1 gives an output of side n+1 with corners aligned).
  Only array indices are in grid cells; every stored value is in input pixels.
* Images are HxWx3 uint8 RGB; maps are HxWxC float32, channels last.
"""
import os

# ----------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------
ROOT_DIR = os.path.dirname(os.path.abspath(__file__))  # [C] project folder, so paths work from any cwd
COCO_DIR = os.path.join(ROOT_DIR, 'coco2017')  # [C] where the user unpacks COCO 2017 (README, "Data")
TRAIN_IMAGES = os.path.join(COCO_DIR, 'train2017')  # [C] COCO train images
TRAIN_ANNOTATIONS = os.path.join(COCO_DIR, 'annotations', 'person_keypoints_train2017.json')  # [C]
VAL_IMAGES = os.path.join(COCO_DIR, 'val2017')  # [C] COCO val images
VAL_ANNOTATIONS = os.path.join(COCO_DIR, 'annotations', 'person_keypoints_val2017.json')  # [C]
MODEL_DIR = os.path.join(ROOT_DIR, 'model')  # [C] checkpoints and backbone weights live here
BACKBONE_CHECKPOINT = os.path.join(MODEL_DIR, '101', 'resnet_v2_101.ckpt')  # [C] TF-Slim ImageNet release
TRAIN_DIR = os.path.join(MODEL_DIR, 'personlab')  # [C] train.py writes checkpoints and summaries here
DEMO_OUTPUT_DIR = os.path.join(ROOT_DIR, 'demo_result')  # [C] demo.py writes pictures and JSON here

# ----------------------------------------------------------------------------
# Keypoints and the kinematic tree (COCO order everywhere: no permutation ever)
# ----------------------------------------------------------------------------
KEYPOINTS = (
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
    'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
    'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
    'left_knee', 'right_knee', 'left_ankle', 'right_ankle')  # COCO person_keypoints order
NUM_KEYPOINTS = len(KEYPOINTS)  # K = 17
_K = {name: i for i, name in enumerate(KEYPOINTS)}
# 16-edge tree rooted at the nose, (parent, child) [I: PoseNet and the re-implementations].
EDGES = tuple((_K[a], _K[b]) for a, b in (
    ('nose', 'left_eye'), ('left_eye', 'left_ear'),
    ('nose', 'right_eye'), ('right_eye', 'right_ear'),
    ('nose', 'left_shoulder'), ('left_shoulder', 'left_elbow'), ('left_elbow', 'left_wrist'),
    ('left_shoulder', 'left_hip'), ('left_hip', 'left_knee'), ('left_knee', 'left_ankle'),
    ('nose', 'right_shoulder'), ('right_shoulder', 'right_elbow'), ('right_elbow', 'right_wrist'),
    ('right_shoulder', 'right_hip'), ('right_hip', 'right_knee'), ('right_knee', 'right_ankle')))
# 32 directed edges (k -> l): the 16 tree edges forward, then the same 16 backward [P: both ways].
# Mid-range field e (channels 2e, 2e+1) points from keypoint DIRECTED_EDGES[e][0] to [e][1].
DIRECTED_EDGES = EDGES + tuple((l, k) for k, l in EDGES)
NUM_EDGES = len(DIRECTED_EDGES)  # 32 -> mid-range offsets have 64 channels
# Left-right flip: keypoint i of a flipped image is keypoint FLIP_PERMUTATION[i] of the original.
FLIP_PERMUTATION = tuple(
    _K[n.replace('left_', 'TMP_').replace('right_', 'left_').replace('TMP_', 'right_')] for n in KEYPOINTS)
# COCO OKS per-keypoint constants kappa_k (pycocotools' sigmas) [P: Expected-OKS uses them].
OKS_SIGMAS = (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)
OKS_SIGMAS = tuple(s / 10.0 for s in OKS_SIGMAS)

# ----------------------------------------------------------------------------
# Geometry: disks, strides, sizes
# ----------------------------------------------------------------------------
RADIUS = 32.0  # R: disk radius of heatmaps, short and mid offsets, in input pixels [P]
OFFSET_LOSS_NORM = RADIUS  # offset L1 losses are divided by R to match the heatmap loss range [P/I]
INPUT_SIZE = 401  # training crop side, px [I: 401 for memory; the paper trains at 801]
TRAIN_OUTPUT_STRIDE = 16  # output stride during training, via atrous convolution [P]
EVAL_OUTPUT_STRIDE = 8  # output stride at evaluation and in the demo [P]
NOMINAL_OUTPUT_STRIDE = 32  # the backbone without atrous convolution [P]

# ----------------------------------------------------------------------------
# Augmentation (transformer.py)
# ----------------------------------------------------------------------------
# The image is first scaled so its longer side equals INPUT_SIZE, then by a random factor [C].
SCALE_RANGE = (0.5, 1.5)  # random scale factor, uniform [R]
MAX_TRANSLATION = 0.25  # random shift of the crop centre, uniform in +-fraction of INPUT_SIZE [C]
FLIP_PROBABILITY = 0.5  # left-right flip with swapped keypoint types [R]
ROTATION_DEGREES = 0.0  # max random rotation; 0 turns rotation off (the paper does not rotate) [C]
PAD_VALUE = (124, 116, 104)  # RGB fill outside the source image (ImageNet mean) [C]

# ----------------------------------------------------------------------------
# Data pipeline (data_generator.py)
# ----------------------------------------------------------------------------
NUM_WORKERS = 2  # target-generation worker processes; 0 runs in the calling process [C]
SEED = 0  # base seed: same seed, same samples [C]
MIN_KEYPOINTS_FOR_MID = 1  # mid-range targets need both endpoints labelled [R]
PREFETCH_PER_WORKER = 4  # samples in flight per worker: keeps workers busy, bounds memory [C]
DATA_START_METHOD = 'fork'  # multiprocessing start method of the workers ('forkserver'/'spawn' also work) [C]
INCLUDE_IMAGES_WITHOUT_PEOPLE = True  # train on images without persons too (negatives) [C]

# ----------------------------------------------------------------------------
# Network (resnet.py, model.py)
# ----------------------------------------------------------------------------
BACKBONE_DEPTH = 101  # ResNet-v2 depth: 50, 101 or 152 [P: 101 and 152]
FREEZE_BATCH_NORM = True  # batch norm uses the checkpoint's moving statistics [R/I]
BATCH_NORM_EPSILON = 1e-5  # TF-Slim resnet_arg_scope default [I]
BATCH_NORM_DECAY = 0.997  # TF-Slim resnet_arg_scope default, used only if batch norm trains [I]
BATCH_NORM_TRAIN_AFFINE = True  # gamma and beta train even with frozen statistics (DeepLab's way) [I]
REFINEMENT_STEPS = 2  # recurrent offset refinement iterations (Eq. 2) [P]
INTERMEDIATE_SUPERVISION = True  # extra heads on block3 with the same losses [R/I]
INTERMEDIATE_LOSS_WEIGHT = 1.0  # weight of the intermediate heads' total loss [C]
INTERMEDIATE_BLOCK = 'block3'  # backbone end point that feeds the intermediate heads [R/I]
HEAD_INIT_STDDEV = 0.01  # truncated-normal stddev of the 1x1 head kernels (DeepLab's logits init); biases 0 [C]
# Offsets (input px) = raw 1x1-conv output * this, for conditioning: a unit change of the raw output moves an
# offset by one disk radius, so the L1/R offset losses give O(1) gradients like the logistic ones [C].
OFFSET_OUTPUT_SCALE = RADIUS

# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------
HEATMAP_LOSS_WEIGHT = 4.0  # logistic heatmap loss [I; R paper]
SEGMENTATION_LOSS_WEIGHT = 2.0  # logistic segmentation loss [I; R paper]
SHORT_OFFSET_LOSS_WEIGHT = 1.0  # L1/R short-range loss [I; R paper]
MID_OFFSET_LOSS_WEIGHT = 0.25  # L1/R mid-range loss [I; R paper]
LONG_OFFSET_LOSS_WEIGHT = 0.125  # L1/R long-range loss [I; R paper]
WEIGHT_DECAY = 1e-4  # L2 weight decay, TF-Slim resnet_arg_scope default [I]

# ----------------------------------------------------------------------------
# Optimisation (train.py)
# ----------------------------------------------------------------------------
BATCH_SIZE = 8  # images per step over all GPUs [R: 8 over 8 GPUs]
NUM_GPUS = 1  # synchronous towers, each with BATCH_SIZE // NUM_GPUS images [R: 8]
LEARNING_RATE = 1e-3  # SGD learning rate [R]
MOMENTUM = 0.9  # SGD momentum [R]
NUM_STEPS = 1000000  # training steps [R]
MOVING_AVERAGE_DECAY = 0.9999  # Polyak averaging of the weights [R/I]
CHECKPOINT_EVERY = 1000  # steps between checkpoints [C]
SUMMARY_EVERY = 100  # steps between TensorBoard summaries [C]
LEARNING_RATE_SCHEDULE = 'constant'  # 'constant', 'cosine' (to 0 at NUM_STEPS) or 'step' [R: constant]
LEARNING_RATE_WARMUP_STEPS = 0  # linear ramp of the learning rate from 0 over these first steps [C]
LEARNING_RATE_DECAY_STEPS = ()  # 'step' schedule: steps at which the rate is multiplied by the factor below [C]
LEARNING_RATE_DECAY_FACTOR = 0.1  # 'step' schedule multiplier [C]
TRAIN_FROM_SCRATCH = False  # True: random backbone instead of BACKBONE_CHECKPOINT (train.py --from-scratch) [C]
CHECKPOINTS_TO_KEEP = 5  # newest checkpoints kept in TRAIN_DIR [C]
LOG_EVERY = 20  # steps between progress lines (step, losses, speed, input wait, ETA) [C]
SUMMARY_IMAGES = 2  # samples shown in the TensorBoard image summary [C]
PREFETCH_BATCHES = 4  # batches train.py keeps ready ahead of the training step [C]

# ----------------------------------------------------------------------------
# Decoding (post_proc.py)
# ----------------------------------------------------------------------------
PEAK_THRESHOLD = 0.01  # Hough-map local maxima above this seed the priority queue [P]
NMS_RADIUS = 10.0  # r: reject a candidate within this many px of a same-type keypoint [P]
SEGMENTATION_THRESHOLD = 0.5  # pixels with p_S above this get an instance [I]
MASK_DISTANCE_THRESHOLD = 0.25  # t: max normalised embedding distance to join a person [I]
INSTANCE_SCORING = 'soft_nms'  # 'soft_nms' (keypoint-level soft NMS) or 'oks_nms' (hard) [P]
OKS_NMS_THRESHOLD = 0.5  # hard OKS-NMS: drop a person with OKS above this to a better one [C]
HOUGH_STRIDE = 4  # Hough-map cell side in input px (Eq. 1 at this resolution; 1 = full resolution) [C]
HOUGH_VOTE_THRESHOLD = 0.01  # grid cells with p_k below this cast no Hough vote (speed; tiny mass) [C]
KEYPOINT_SUPPORT_THRESHOLD = 0.05  # a keypoint counts as found if p_k(y) * Hough mass within r of y >= this [C]
SHORT_REFINE_STEPS = 1  # sub-pixel refinement y <- y + S_k(y) after each landing, moves of at most r only [C]
LONG_RANGE_RESCUE = True  # re-find keypoints the mid-range tree missed via long-range offsets of found ones [C]
MIN_INSTANCE_SCALE = 16.0  # lower bound of lambda_j (px) when a person's keypoint box is degenerate [C]
MAX_SEEDS = 5000  # strongest Hough maxima kept in the queue (bounds work on saturated/noisy maps) [C]
MAX_PEOPLE = 100  # stop the greedy decoder after this many people (COCO segm evaluates at most 100) [C]
SEED_BATCH = 64  # first batch of seeds decoded at once; later batches double (vectorised greedy) [C]
EVAL_LONGER_SIDE = 1401  # single-scale test size, longer side in px [R]
EVAL_SCALES = (601, 1201, 1801)  # multi-scale test sizes, longer side in px [R]
