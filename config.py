"""PersonLab configuration: the one home of every hyperparameter and path.

Users experiment by editing this file; programs may override a few values from
the command line. Every value carries a one-line comment; [P] marks a value the
paper states, [I] one the public re-implementations use, [R] one recalled from
the paper, [C] a choice of this project (explained in docs/choices.md).
The method, equation by equation with the code that implements it: docs/method.md.

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
COCO_DIR = os.path.join(ROOT_DIR, 'coco2017')  # [C] where the user unpacks COCO 2017 (docs/data.md)
TRAIN_IMAGES = os.path.join(COCO_DIR, 'train2017')  # [C] COCO train images
TRAIN_ANNOTATIONS = os.path.join(COCO_DIR, 'annotations', 'person_keypoints_train2017.json')  # [C]
VAL_IMAGES = os.path.join(COCO_DIR, 'val2017')  # [C] COCO val images
VAL_ANNOTATIONS = os.path.join(COCO_DIR, 'annotations', 'person_keypoints_val2017.json')  # [C]
MODEL_DIR = os.path.join(ROOT_DIR, 'model')  # [C] checkpoints and backbone weights live here
BACKBONE_CHECKPOINT = os.path.join(MODEL_DIR, '101', 'resnet_v2_101.ckpt')  # [C] TF-Slim ImageNet release
TRAIN_DIR = os.path.join(MODEL_DIR, 'personlab')  # [C] train.py writes checkpoints and summaries here
DEMO_OUTPUT_DIR = os.path.join(ROOT_DIR, 'demo_result')  # [C] demo.py writes pictures and JSON here
# [C] a few genuine COCO images used by the tests and benchmarks, never copied into the project
COCO_SAMPLE_DIR = os.path.join(os.environ.get('PERSONLAB_SHARED', os.path.join(os.path.dirname(ROOT_DIR), 'shared')),
                               'coco_sample')

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
# OFFSET_LOSS_NORM and OFFSET_OUTPUT_SCALE copy RADIUS once, at import: a preset or --set that changes RADIUS
# does not change them, so a preset that overrides RADIUS states both explicitly (see QUICKSTART).
INPUT_SIZE = 401  # training crop side, px [I: 401 for memory; the paper trains at 801]
TRAIN_OUTPUT_STRIDE = 16  # output stride during training, via atrous convolution [P]
# Stride of the grid the training targets are built on and the losses computed on. Below TRAIN_OUTPUT_STRIDE
# (a divisor of it) the outputs are upsampled bilinearly to that grid first, as DeepLab upsamples its logits:
# the loss then asks the coarse maps to be right between their cells too, where inference at stride 8 reads
# them. Measured worse at 4: quickstart AP 0.467 vs 0.469, overfit 0.517 vs 0.699 (docs/benchmarks.md).
LOSS_STRIDE = 16  # the paper's CNN-output resolution [C]
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
# Inference shrinks with area averaging (inference.resize_longer_side); plain bilinear warping of a 0.3-0.6x
# shrink aliases (more high-frequency energy than the test images have). docs/training.md, "Quickstart recipe".
AUGMENT_AREA_SHRINK = True  # shrinking augmentations average areas first (cv2.INTER_AREA), as inference does [C]

# ----------------------------------------------------------------------------
# Data pipeline (data_generator.py)
# ----------------------------------------------------------------------------
NUM_WORKERS = 2  # target-generation worker processes; 0 runs in the calling process [C]
SEED = 0  # base seed: same seed, same samples [C]
PREFETCH_PER_WORKER = 4  # samples in flight per worker: keeps workers busy, bounds memory [C]
DATA_START_METHOD = 'fork'  # multiprocessing start method of the workers ('forkserver'/'spawn' also work) [C]
INCLUDE_IMAGES_WITHOUT_PEOPLE = True  # train on images without persons too (negatives) [C]
WORKER_TIMEOUT = 300.0  # s without a sample before a data worker counts as stuck (error, not a silent hang) [C]
WORKER_STOP_GRACE = 10.0  # s a data worker gets to finish its sample at shutdown before it is killed [C]

# ----------------------------------------------------------------------------
# Network (resnet.py, model.py)
# ----------------------------------------------------------------------------
BACKBONE_DEPTH = 101  # ResNet-v2 depth: 50, 101 or 152 (26: from scratch only, resnet.py) [P: 101 and 152]
FREEZE_BATCH_NORM = True  # batch norm uses the checkpoint's moving statistics [R/I]
BATCH_NORM_EPSILON = 1e-5  # TF-Slim resnet_arg_scope default [I]
BATCH_NORM_DECAY = 0.997  # TF-Slim resnet_arg_scope default, used only if batch norm trains [I]
BATCH_NORM_TRAIN_AFFINE = True  # gamma and beta train even with frozen statistics (DeepLab's way) [I]
# Zero-init residual (Goyal et al. 2017): with He-scale conv3 each unit doubles the residual stream of a random
# backbone with frozen unit statistics (feature rms ~2e4 at ResNet-101). Checkpoints overwrite it.
ZERO_INIT_RESIDUAL = True  # each unit's conv3 kernel starts at 0, so a random backbone keeps O(1) features [C]
REFINEMENT_STEPS = 2  # recurrent offset refinement iterations (Eq. 2) [P]
LONG_SELF_REFINEMENT_STEPS = 2  # long-range offsets first refined with themselves this often, then with S_k [I]
INTERMEDIATE_SUPERVISION = True  # extra heads on block3 with the same losses [R/I]
INTERMEDIATE_LOSS_WEIGHT = 1.0  # weight of the intermediate heads' total loss [C]
# The intermediate heads read this block's output normalised by the next unit's preact (relu(batch norm) with
# the checkpoint's statistics; end point '<next block>/unit_1/bottleneck_v2/preact'), not the raw residual stream.
INTERMEDIATE_BLOCK = 'block3'  # backbone block that feeds the intermediate heads [R/I]
HEAD_INIT_STDDEV = 0.01  # truncated-normal stddev of the 1x1 head kernels (DeepLab's logits init) [C]
# Heatmap and segmentation biases start at -log((1 - pi) / pi) so the first sigmoid outputs are pi, near the
# positive fractions (measured on COCO_SAMPLE_DIR, 401 crops, stride 16: heatmaps 1.6%, person 8.8%):
# with bias 0 (p = 0.5) the initial heatmap loss would swamp the others. Offset head biases start at 0.
HEATMAP_PRIOR = 0.01  # initial heatmap probability pi of the heatmap head's bias [C]
SEGMENTATION_PRIOR = 0.1  # initial person probability pi of the segmentation head's bias [C]
# A unit change of the raw output moves an offset by one disk radius, so the L1/R losses give O(1) gradients.
OFFSET_OUTPUT_SCALE = RADIUS  # offsets (input px) = raw 1x1-conv output * this, for conditioning [C]

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
OPTIMIZER = 'momentum'  # 'momentum' (SGD with MOMENTUM) [R] or 'adam' (ADAM_BETAS) [C]
ADAM_BETAS = (0.9, 0.999)  # Adam's moment decays, if OPTIMIZER is 'adam' (TF defaults) [C]
NUM_STEPS = 1000000  # training steps [R]
MOVING_AVERAGE_DECAY = 0.9999  # Polyak averaging of the weights [R/I]
CHECKPOINT_EVERY = 1000  # steps between checkpoints [C]
SUMMARY_EVERY = 100  # steps between TensorBoard summaries [C]
LEARNING_RATE_SCHEDULE = 'constant'  # 'constant', 'cosine' (to 0 at NUM_STEPS) or 'step' [R: constant]
LEARNING_RATE_WARMUP_STEPS = 0  # linear ramp of the learning rate from 0 over these first steps [C]
LEARNING_RATE_DECAY_STEPS = ()  # 'step' schedule: steps at which the rate is multiplied by the factor below [C]
LEARNING_RATE_DECAY_FACTOR = 0.1  # 'step' schedule multiplier [C]
# oneDNN's automatic mixed precision: convolutions and matmuls run in bfloat16, the weights, optimiser, losses and
# checkpoints stay float32. 1.4x the steps/s of float32 on a CPU with AVX512_BF16 (docs/training.md); on a CPU
# without bfloat16 instructions train.py keeps float32 (TensorFlow would emulate them slowly). GPUs: not affected.
CPU_BFLOAT16 = False  # train the CPU's convolutions in bfloat16 [C]
TRAIN_FROM_SCRATCH = False  # True: random backbone instead of BACKBONE_CHECKPOINT (train.py --from-scratch) [C]
CHECKPOINTS_TO_KEEP = 5  # newest checkpoints kept in TRAIN_DIR [C]
LOG_EVERY = 20  # steps between progress lines (step, losses, speed, input wait, ETA) [C]
ETA_WARMUP_STEPS = 2  # first steps of a (re)start left out of the ETA: they build and optimise the graph [C]
SUMMARY_IMAGES = 2  # samples shown in the TensorBoard image summary [C]
PREFETCH_BATCHES = 4  # batches train.py keeps ready ahead of the training step [C]
# Several machines (TF_CONFIG, distributed.py): the chief's checkpoint save happens while the others wait in the
# next step, so this must exceed a save (tens of seconds for ResNet-101 with its slots and averages).
CLUSTER_TIMEOUT = 300.0  # s a training worker waits for the others before stopping, naming the one that is gone [C]

# ----------------------------------------------------------------------------
# Decoding (post_proc.py)
# ----------------------------------------------------------------------------
PEAK_THRESHOLD = 0.01  # Hough-map local maxima above this seed the priority queue [P]
NMS_RADIUS = 10.0  # r: reject a candidate within this many px of a same-type keypoint [P]
SEGMENTATION_THRESHOLD = 0.5  # pixels with p_S above this get an instance [I]
MASK_DISTANCE_THRESHOLD = 0.25  # t: max normalised embedding distance to join a person [I]
INSTANCE_SCORING = 'soft_nms'  # 'soft_nms' (keypoint-level soft NMS) or 'oks_nms' (hard) [P]
OKS_NMS_THRESHOLD = 0.5  # hard OKS-NMS: drop a person with OKS above this to a better one [C]
# The Hough cell follows the disk: at R = 16 (the small-image presets) 2 px cells placed keypoints better than 4 px
# (overfit model 0.699 -> 0.738, its oracle 0.864 -> 0.870; quickstart 0.493 -> 0.500; docs/decoding.md).
HOUGH_CELLS_PER_RADIUS = 8  # Hough-map cell side = R / this, at least 1 px (4 px at R = 32) [C]
HOUGH_VOTE_THRESHOLD = 0.01  # grid cells with p_k below this cast no Hough vote (speed; tiny mass) [C]
KEYPOINT_SUPPORT_THRESHOLD = 0.05  # a keypoint counts as found if p_k(y) * Hough mass near y >= this [C]
# Drop Hough maxima whose own support is below KEYPOINT_SUPPORT_THRESHOLD before they seed anybody; False: every
# maximum above PEAK_THRESHOLD seeds, as in the paper (docs/choices.md) [C]
SEED_SUPPORT_FILTER = False
KEYPOINT_SUPPORT_RADIUS = 4.0  # "near": Hough cells within this many px (at least 1 cell) of y [C]
LANDING_TOLERANCE = 5.0  # offsets read at a point: average the corner cells whose votes agree within this px [C]
LANDING_MIN_VALID = 0.5  # with validity maps: offsets at a point are defined if the validity read there reaches this [C]
SHORT_REFINE_STEPS = 1  # refinement steps y <- y + S_k(y) of the seeds and of the rescue's candidates [C]
REFINE_MAX_SHIFT = 5.0  # a refinement moving further (px) would jump to a neighbour's keypoint: refused [C]
LONG_RANGE_RESCUE = True  # re-find keypoints the mid-range tree missed via long-range offsets of found ones [C]
RESCUE_MIN_AGREEMENT = 1  # a rescued keypoint needs this many candidates (sources) agreeing within r [C]
RESCUE_ROUNDS = 2  # rescue rounds: a keypoint rescued in one serves as a source in the next [C]
MERGE_FRAGMENTS = True  # merge a later person into an earlier one it shares MERGE_MIN_SHARED keypoints with [C]
MERGE_MIN_SHARED = 1  # ... if it shares this many found keypoints with it (same type within r) and clashes nowhere [C]
RESOLVE_CONFLICTS = False  # True: of two people's found keypoints within r, one loses it (walk beats rescue) [C]
CENTROID_WINDOW = 3  # a found keypoint settles on the centroid of its Hough votes over this many cells square [C]
CENTROID_PASSES = 2  # ... re-centring the window this many times [C]
MASK_SCORE_BOUNDARY = 1.0  # segm score = score * cells / (cells + this * boundary cell edges) [C]
MIN_INSTANCE_SCALE = 16.0  # lower bound of lambda_j (px) when a person's keypoint box is degenerate [C]
MAX_SEEDS = 5000  # strongest Hough maxima kept in the queue (bounds work on saturated/noisy maps) [C]
MAX_PEOPLE = 100  # stop the greedy decoder after this many people (COCO segm evaluates at most 100) [C]
SEED_BATCH = 64  # first batch of seeds decoded at once; later batches double (vectorised greedy) [C]
PLOT_KEYPOINT_THRESHOLD = 0.05  # plot.py draws keypoints whose score (or COCO v) exceeds this [C]
PLOT_MASK_ALPHA = 0.45  # opacity of instance-mask colours in plot.py [C]
PLOT_MAP_ALPHA = 0.6  # opacity of heatmap / Hough views at their maximum in plot.py [C]
PLOT_LINE_WIDTH = 1.0 / 300  # plot.py limb thickness per px of the image's longer side (1 px at 300, 3 at 900) [C]
PLOT_FONT_SCALE = 1.0 / 1000  # plot.py score text: OpenCV font scale per px of the longer side [C]
# Single-scale test size, longer side in px. None: the checkpoint's training INPUT_SIZE, the size augmentation
# normalises every longer side to before its random scale, so people appear as large as in training [C]. The
# paper tests at 1401 [R] after training on 801 crops; set 1401 here for a model trained that way.
EVAL_LONGER_SIDE = None
EVAL_SCALES = (601, 1201, 1801)  # multi-scale test sizes, longer side in px (the paper's, around its 1401) [R]
# Decoder test scenes (scenes.py: tests/test_post_proc.py, bench/decode_bench.py): random standing figures [C]
SCENE_POSES = {
    'fill': (0.6, 1.2),  # default height range, x the side of an equal share of the image per person
    'jitter': 0.06,  # each keypoint moves by up to this fraction of the height, uniform
    'lean_degrees': 15.0,  # whole-figure tilt, uniform in +-this
    'limb_width': 0.08,  # body mask: limb thickness, fraction of the height
    'head_radius': 0.08,  # body mask: head disk radius, fraction of the height
}
# How scenes.network_like makes target maps look like a network's outputs (x its `noise` factor) [C]
SCENE_NOISE = {
    'heatmap_edge': 0.15,  # heatmap disks blurred by a Gaussian of this std x R: a soft edge, not a step
    'heatmap_background': 0.01,  # mean of the exponential background added to the heatmaps
    'heatmap_noise': 0.05,  # std of the Gaussian noise on the heatmaps
    'short_noise': 2.0,  # std (px) of the noise on short-range offsets where the target is defined
    'mid_noise': 4.0,  # std (px) of the noise on mid-range offsets where defined
    'long_noise': 4.0,  # std (px) of the noise on long-range offsets where defined
    'junk_offsets': 20.0,  # std (px) of the random offsets where no target is defined
    'segmentation_blur': 0.7,  # std (grid cells) of the blur of the segmentation map
    'segmentation_noise': 0.05,  # std of the Gaussian noise on the segmentation
}

# ----------------------------------------------------------------------------
# Inference (inference.py: demo.py, eval.py --checkpoint, export_model.py, serve_example.py, bench)
# ----------------------------------------------------------------------------
# demo.py's input size (longer side, px); None: the checkpoint's training INPUT_SIZE, the size training
# normalised every image's longer side to before its random scale, so people appear as large as in training [C]
DEMO_LONGER_SIDE = None
MIN_INPUT_SIDE = 16  # source images with a shorter side (px) are refused: too small to hold a person [C]
MAX_INPUT_PIXELS = 2 ** 27  # larger source images are refused from their header: ~400 MB decoded as RGB [C]
ALPHA_BACKGROUND = (255, 255, 255)  # RGBA inputs are composited over this RGB colour, as viewers show them [C]
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm', '.jp2')  # [C]
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')  # [C]
DEMO_VIDEO_FOURCC = 'mp4v'  # codec of demo.py's annotated .mp4 videos (MJPG .avi if it is missing) [C]
DEBUG_OFFSET_THRESHOLD = 0.5  # demo.py --debug offset picture: lines from cells whose strongest p_k exceeds this [C]
DEMO_PICTURE_MIN_SCORE = 0.1  # people scoring below this are left out of demo.py's pictures (JSON keeps all) [C]
DEMO_VIDEO_FALLBACK_FPS = 25.0  # demo.py: frame rate of the annotated video when the input's is unknown [C]
DEMO_PRESET_IMAGES = 4  # demo.py --preset quickstart: this many synthetic validation images [C]
DEBUG_OFFSET_SUBPIXEL_BITS = 4  # demo.py --debug offset lines drawn at 1/2^this px (cv2 `shift`) [C]
EXPORT_DIR = os.path.join(MODEL_DIR, 'export')  # export_model.py writes saved_model/ and frozen_graph.pb here [C]
EVAL_RESULTS_DIR = os.path.join(ROOT_DIR, 'eval_result')  # eval.py --checkpoint writes its COCO results here [C]
INFER_BENCH_SIDES = (401, 801, 1401)  # bench/infer_bench.py input sizes, longer side px (issue 6) [C]

# ----------------------------------------------------------------------------
# Synthetic dataset (synthetic.py): articulated figures written as COCO person_keypoints
# Lengths are fractions of the image side or of the figure height H (head top to ankles); angles in degrees.
# ----------------------------------------------------------------------------
SYNTHETIC_DIR = os.path.join(ROOT_DIR, 'synthetic')  # output: train2017/, val2017/, annotations/ as COCO [C]
SYNTHETIC_NUM_TRAIN = 2000  # training images written by default [C]
SYNTHETIC_NUM_VAL = 100  # validation images written by default [C]
SYNTHETIC_IMAGE_SIZE = 193  # side of the square images, px (12*16+1: whole grids at strides 8 and 16) [C]
SYNTHETIC_MIN_IMAGE_SIZE = 64  # smallest side accepted: limbs need a few pixels [C]
SYNTHETIC_SEED = 0  # same seed, byte-identical dataset [C]
SYNTHETIC_JPEG_QUALITY = 92  # cv2 JPEG quality of the written images [C]
SYNTHETIC_VAL_ID_OFFSET = 1000000  # val image and annotation ids start above this, train ids at 1 [C]
SYNTHETIC_PEOPLE_PER_IMAGE = (1, 4)  # keypoint-labelled figures per image, min and max, uniform [C]
SYNTHETIC_PERSON_HEIGHT = (0.4, 0.9)  # figure height H as a fraction of the image side, uniform [C]
SYNTHETIC_PLACEMENT = (0.1, 0.9)  # range of a figure's box centre, fraction of the side (big ones get cut) [C]
SYNTHETIC_LEAN_DEGREES = 20.0  # whole-figure tilt, uniform in +-this [C]
SYNTHETIC_YAW_DEGREES = 50.0  # body turn, uniform in +-this: narrows shoulders and hips, shifts the face [C]
SYNTHETIC_HIDDEN_EAR_YAW = 30.0  # a face turned further than this hides its far ear (v=0) [C]
SYNTHETIC_BACK_VIEW_PROBABILITY = 0.2  # figure seen from behind: no face, nose and eyes unlabelled [C]
SYNTHETIC_ARM_RAISE = (-30.0, 170.0)  # upper arm angle away from the torso's down direction, outwards [C]
SYNTHETIC_ELBOW_BEND = (0.0, 150.0)  # forearm angle to the upper arm, random sign [C]
SYNTHETIC_LEG_SPREAD = (-10.0, 50.0)  # thigh angle away from the torso's down direction, outwards [C]
SYNTHETIC_KNEE_BEND = (0.0, 120.0)  # shin angle to the thigh, random sign [C]
SYNTHETIC_FORESHORTENING = (0.7, 1.0)  # per-limb-segment length factor (limbs pointing at the camera) [C]
SYNTHETIC_PROPORTION_JITTER = 0.1  # each body length of a figure is scaled by 1 +- this, uniform [C]
SYNTHETIC_BODY = {  # figure anatomy as fractions of H (head top to ankles, limbs straight down) [C]
    'head_radius': 0.08,  # half height of the head ellipse
    'neck': 0.04,  # shoulder line to the bottom of the head
    'torso': 0.30,  # shoulder line to hip line
    'shoulder_width': 0.24,  # between the shoulder joints, facing the camera
    'hip_width': 0.15,  # between the hip joints, facing the camera
    'upper_arm': 0.17,  # shoulder to elbow
    'forearm': 0.15,  # elbow to wrist
    'thigh': 0.23,  # hip to knee
    'shin': 0.22,  # knee to ankle
    'arm_thickness': 0.065,  # drawn width of arm segments
    'leg_thickness': 0.085,  # drawn width of leg segments
    'neck_thickness': 0.05,  # drawn width of the neck
    'joint_radius': 0.03,  # radius of the coloured blob drawn on every body joint (min 1 px)
}
SYNTHETIC_FACE = {  # head and face layout; lengths as fractions of the head radius [C]
    'head_aspect': 0.85,  # head width / head height
    'eye_spacing': 0.38,  # eye offset sideways from the face centre
    'eye_height': 0.15,  # eyes above the head centre
    'eye_radius': 0.16,  # eye blob radius
    'nose_drop': 0.2,  # nose below the head centre
    'nose_radius': 0.15,  # nose blob radius
    'ear_spacing': 0.78,  # ear offset sideways from the head centre (inside the head outline)
    'ear_radius': 0.2,  # ear blob radius
    'turn_shift': 0.45,  # sideways shift of the face per unit sin(yaw)
    'hair_offset': 0.4,  # the hair cap (upper half ellipse) is centred this far above the head centre
    'hair_height': 0.62,  # half height of the hair cap
}
SYNTHETIC_KEYPOINT_COLOURS = {  # RGB of the blobs that mark each keypoint kind; the same on both sides [C]
    'nose': (235, 40, 40), 'eye': (25, 25, 90), 'ear': (150, 80, 60),
    'shoulder': (255, 225, 0), 'elbow': (0, 225, 225), 'wrist': (240, 0, 200),
    'hip': (255, 130, 0), 'knee': (0, 200, 60), 'ankle': (40, 70, 255)}
SYNTHETIC_SKIN_TONES = ((250, 215, 185), (225, 175, 140), (190, 135, 95), (140, 95, 65), (95, 60, 40))  # RGB [C]
SYNTHETIC_HAIR_COLOURS = ((30, 25, 20), (90, 60, 30), (160, 120, 60), (200, 180, 120), (120, 120, 120))  # RGB [C]
SYNTHETIC_CLOTHING_SATURATION = (0.2, 0.9)  # HSV saturation of clothes (hue uniform) [C]
SYNTHETIC_CLOTHING_VALUE = (0.25, 0.95)  # HSV value of clothes [C]
SYNTHETIC_COLOUR_JITTER = 12  # skin and hair colours vary by +- this per channel around the palette [C]
SYNTHETIC_TINY_PERSONS = (0, 2)  # tiny figures per image, annotated with num_keypoints 0 [C]
SYNTHETIC_TINY_HEIGHT = (0.06, 0.14)  # tiny figure height, fraction of the side [C]
SYNTHETIC_CROWD_PROBABILITY = 0.15  # an image holds a crowd region (iscrowd=1, RLE) [C]
SYNTHETIC_CROWD_FIGURES = (6, 16)  # small figures in a crowd region [C]
SYNTHETIC_CROWD_HEIGHT = (0.08, 0.16)  # crowd figure height, fraction of the side [C]
SYNTHETIC_CROWD_EXTENT = (0.25, 0.5)  # width of the crowd region, fraction of the side [C]
SYNTHETIC_CROWD_ASPECT = 0.5  # height / width of the box the crowd figures' centres are drawn from [C]
SYNTHETIC_CROWD_CLOSING = 0.25  # gaps in a crowd are closed with a disk of this radius x figure height [C]
SYNTHETIC_OCCLUDER_PROBABILITY = 0.3  # an image has foreground objects in front of the people [C]
SYNTHETIC_OCCLUDERS = (1, 2)  # occluding objects in such an image [C]
SYNTHETIC_OCCLUDER_SIZE = (0.1, 0.35)  # occluder side, fraction of the image side [C]
SYNTHETIC_MIN_VISIBLE_FRACTION = 0.3  # a figure showing less of itself loses its keypoints (num_keypoints 0) [C]
SYNTHETIC_MIN_VISIBLE_AREA = 16  # figures with fewer visible pixels are not drawn at all [C]
SYNTHETIC_BACKGROUND_CELLS = (2, 6)  # the smooth background colour field is interpolated from n x n colours [C]
SYNTHETIC_BACKGROUND_VARIATION = 60.0  # those colours differ from the image's tone by up to +- this [C]
SYNTHETIC_TEXTURE_STD = (4.0, 24.0)  # range of the std of the background's fine texture, 0..255 scale [C]
SYNTHETIC_CLUTTER_SHAPES = (3, 12)  # random background shapes (boxes, disks, bars) per image [C]
SYNTHETIC_CLUTTER_SIZE = (0.04, 0.4)  # clutter shape size, fraction of the side [C]
SYNTHETIC_BAR_THICKNESS = 0.15  # a bar-shaped clutter or occluder is this thick relative to its size [C]
SYNTHETIC_NOISE_STD = (2.0, 8.0)  # range of the per-image std of Gaussian pixel noise, 0..255 scale [C]
COCO_SKELETON = (  # COCO person category 'skeleton': 1-based keypoint pairs, as in the official files [C]
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))

# ----------------------------------------------------------------------------
# Presets: `train.py --preset NAME` applies one of these dicts over the values above (flags win)
# ----------------------------------------------------------------------------
QUICKSTART = {  # a small model learns the synthetic set on a CPU (times and machines: docs/training.md) [C]
    # the synthetic set written by synthetic.py (docs/data.md)
    'TRAIN_ANNOTATIONS': os.path.join(SYNTHETIC_DIR, 'annotations', 'person_keypoints_train2017.json'),
    'TRAIN_IMAGES': os.path.join(SYNTHETIC_DIR, 'train2017'),
    'TRAIN_DIR': os.path.join(MODEL_DIR, 'quickstart'),  # where demo.py / eval.py find the checkpoint
    # ResNet-v2-26 (resnet.py: two units per block): in float32, 1100 steps in the time of depth 50's 700 learnt
    # more (AP 0.525 against 0.500 at the same rate; docs/training.md, "Quickstart recipe", second round)
    'BACKBONE_DEPTH': 26,
    'TRAIN_FROM_SCRATCH': True,  # no ImageNet download: everything learnt from the synthetic set
    'FREEZE_BATCH_NORM': False,  # a random backbone learns faster with batch norm trained on batch statistics
    'BATCH_NORM_DECAY': 0.9,  # moving statistics settle within the short run
    'INPUT_SIZE': 129,  # 8*16+1: a step of 8 crops takes ~0.34 s on 2 idle cores (ResNet-v2-26, bfloat16)
    # demo.py --preset quickstart's input size: the synthetic images' own 193 px (a higher AP there than at
    # the training size 129, docs/training.md); quickstart.sh evaluates at the same size
    'DEMO_LONGER_SIDE': 193,
    'RADIUS': 16.0,  # people are ~20-170 px tall in these crops: R=32 disks would cover whole figures
    # Offsets measured in disk radii, like the default's (config.py copies RADIUS into both only at import).
    'OFFSET_LOSS_NORM': 16.0,
    'OFFSET_OUTPUT_SCALE': 16.0,
    # The network meets people as large as the evaluation at 193 px shows them: the fit to 129 px times
    # 1.0-2.0 is 0.67-1.34 of the source size (the default 0.5-1.5 gave 0.33-1.0); the larger shift lets the
    # crops reach every part of the larger image. Recipe table: docs/training.md, "Quickstart recipe".
    'SCALE_RANGE': (1.0, 2.0),
    'MAX_TRANSLATION': 0.5,
    'BATCH_SIZE': 8,  # images per step
    # bfloat16 convolutions: 2.7 against 1.9 steps/s on 2 cores with AVX512_BF16 (AP 0.565 against 0.525 in the
    # same time; docs/training.md, "Quickstart recipe")
    'CPU_BFLOAT16': True,
    # ~10 min of bfloat16 steps since atrous convolution runs with dilations (1.2x faster, docs/network.md):
    # AP 0.605 against 0.565 for 1650 steps (docs/training.md, "Fourth round"); times by machine: training.md
    'NUM_STEPS': 1950,
    'OPTIMIZER': 'adam',  # learns faster from scratch than SGD: AP 0.085 vs 0.035 at 600 steps (docs/training.md)
    'LEARNING_RATE': 2e-3,  # twice Adam's usual rate: AP 0.500 against 0.472 at 1e-3 (3e-3: 0.501)
    'LEARNING_RATE_SCHEDULE': 'cosine',  # anneal to 0 at NUM_STEPS
    'LEARNING_RATE_WARMUP_STEPS': 50,  # ramp up while batch norm statistics settle
    'MOVING_AVERAGE_DECAY': 0.99,  # Polyak averaging over the last ~100 steps of a short run
    'CHECKPOINT_EVERY': 100,  # steps between checkpoints
    'CHECKPOINTS_TO_KEEP': 2,  # each holds weights, 2 Adam slots and averages (size: docs/training.md)
    'LOG_EVERY': 10,  # steps between progress lines
    'SUMMARY_EVERY': 50,  # steps between TensorBoard summaries
}

OVERFIT = {  # bench/overfit.py: memorise the real COCO sample from random weights on a 2-core CPU [C]
    'TRAIN_DIR': os.path.join(MODEL_DIR, 'overfit'),  # the benchmark's checkpoints
    # ResNet-v2-26 at 193 px in bfloat16: 0.92x the oracle (0.88-0.95x with +-8 px shifts) where ResNet-v2-50
    # at 129 px in float32 plateaued at 0.85x (docs/benchmarks.md, "Overfit")
    'BACKBONE_DEPTH': 26,
    'TRAIN_FROM_SCRATCH': True,  # no ImageNet weights here
    'FREEZE_BATCH_NORM': False,  # a random backbone needs batch norm trained on batch statistics
    'BATCH_NORM_DECAY': 0.9,  # moving statistics settle within the short run
    'INPUT_SIZE': 193,  # 12*16+1: larger people than at 129, where 1 px offset errors cost small faces their OKS
    'INCLUDE_IMAGES_WITHOUT_PEOPLE': False,  # memorising needs people: empty images only cost steps
    'SCALE_RANGE': (1.0, 1.0),  # no scale augmentation: people as large as evaluation shows them
    # Shifts cover every position of a keypoint within a stride-16 cell (without them a memorised network knows
    # its offsets on one lattice only: slope 0.5 at evaluation's stride 8) and, at +-40 px, also where eval.py
    # puts the image: alone at the top-left, 32 px above a 3:2 image centred in a crop. AP 0.870, no longer
    # falling at the end; +-8 px runs ended at 0.831-0.895 (docs/benchmarks.md, "Overfit", "Why the plateau").
    'MAX_TRANSLATION': 40.0 / 193,
    'FLIP_PROBABILITY': 0.0,
    'RADIUS': 16.0,  # people are ~15-180 px tall at 193: a 32 px disk would cover whole small people
    'OFFSET_LOSS_NORM': 16.0,  # offsets are measured in disk radii (see RADIUS)
    'OFFSET_OUTPUT_SCALE': 16.0,
    'BATCH_SIZE': 8,
    'CPU_BFLOAT16': True,  # bfloat16 convolutions: 1.4x float32's steps/s in the quickstart (docs/training.md)
    'NUM_STEPS': 1600,  # AP flat from ~1000 steps in every run; 19 min on 2 cores (docs/benchmarks.md)
    'OPTIMIZER': 'adam',
    'LEARNING_RATE': 1e-3,
    'LEARNING_RATE_SCHEDULE': 'cosine',
    'LEARNING_RATE_WARMUP_STEPS': 50,
    'MOVING_AVERAGE_DECAY': 0.99,  # Polyak averaging over the last ~100 steps
    'CHECKPOINT_EVERY': 100,  # one point of the learning curve per checkpoint
    'CHECKPOINTS_TO_KEEP': 100,  # keep them all for the curve
    'LOG_EVERY': 10,
    'SUMMARY_EVERY': 50,
}
