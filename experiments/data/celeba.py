"""CelebA face attributes through tensorflow-datasets, as TAG sets it up.

`tfds.load("celeb_a")`: 202,599 aligned and cropped 218×178 colour faces
with 40 binary attributes, in the standard splits (162,770 train, 19,867
validation, 19,962 test). As in the TAG paper (Fifty et al., 2021),
images are converted to float in [0, 1] (`tf.image.convert_image_dtype`)
and resized to 64×64; by default the nine attributes of the paper are the
tasks, any of the 40 can be chosen with `tasks=`. Labels are the boolean
attributes as int32 0/1.

The data (about 1.4 GB from Google Drive) is downloaded and prepared by
tensorflow-datasets the first time. Without the internet, prepare it on a
machine that has it (`tfds.builder("celeb_a", data_dir=...)
.download_and_prepare()`) and pass that directory as `data_dir`.
"""

import tensorflow as tf

from experiments.data import base

# The 40 attributes, in tfds `celeb_a` (2.1.0) feature order.
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes",
    "Bald", "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair",
    "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)
# The paper's nine tasks.
DEFAULT_TASKS = (
    "5_o_Clock_Shadow", "Black_Hair", "Blond_Hair", "Brown_Hair", "Goatee",
    "Mustache", "No_Beard", "Rosy_Cheeks", "Wearing_Hat",
)
IMAGE_SIZE = 64


def preprocess(example, tasks, image_size=IMAGE_SIZE):
    """One tfds example -> (float32 image in [0, 1], {task: int32 0/1})."""
    image = tf.image.convert_image_dtype(example["image"], tf.float32)
    image = tf.image.resize(image, (image_size, image_size))
    labels = {
        t: tf.cast(example["attributes"][t], tf.int32) for t in tasks
    }
    return image, labels


def _unavailable(data_dir, download, error):
    where = data_dir or "the default tfds directory (~/tensorflow_datasets)"
    first_line = (str(error).splitlines() or [""])[0]
    how = ("the download failed" if download
           else "downloading is disabled (download=False)")
    return base.DatasetUnavailableError(
        f"CelebA (tfds `celeb_a`) is not prepared in {where} and {how}: "
        f"{type(error).__name__}: {first_line}\n"
        "Run on a machine with internet access (tensorflow-datasets "
        "downloads and prepares it, about 1.4 GB), or prepare it elsewhere "
        "with tfds.builder('celeb_a', data_dir=DIR).download_and_prepare() "
        "and pass --data_dir=DIR pointing at that directory."
    )


def _load_splits(tfds, splits, data_dir, download):
    """`tfds.load` of the splits, or DatasetUnavailableError if absent."""
    try:
        return tfds.load("celeb_a", split=splits, data_dir=data_dir,
                         download=False)
    except AssertionError as error:  # tfds: "could not find data in ...".
        if not download:
            raise _unavailable(data_dir, download, error) from error
    try:
        return tfds.load("celeb_a", split=splits, data_dir=data_dir,
                         download=True)
    except Exception as error:  # Whatever stopped the download or prepare.
        raise _unavailable(data_dir, download, error) from error


def load(*, tasks=None, data_dir=None, download=True,
         splits=base.SPLITS, image_size=IMAGE_SIZE, seed=0):
    """Loads CelebA attributes as `MultiTaskData`.

    Args:
        tasks: Attribute names (any of `ATTRIBUTES`); `None` for the paper's
            nine (`DEFAULT_TASKS`).
        data_dir: tfds data directory; `None` for the tfds default.
        download: Let tfds download and prepare the data when it is absent.
        splits: tfds split strings for train, validation and test, e.g.
            `("train[:1%]", "validation[:1%]", "test[:1%]")` for a smoke run.
        image_size: Side of the square images (64 in the paper).
        seed: Ignored (the splits are CelebA's own); accepted so that every
            loader takes the same arguments.

    Returns:
        A `MultiTaskData` named `"celeba"`.

    Raises:
        DatasetUnavailableError: If the data is not prepared in `data_dir`
            and cannot be downloaded.
    """
    del seed  # CelebA's splits are fixed.
    import tensorflow_datasets as tfds

    tasks = base.resolve_tasks(tasks, ATTRIBUTES, DEFAULT_TASKS)
    if len(splits) != 3:
        raise ValueError(
            "`splits` must give train, validation and test split strings. "
            f"Received: splits={splits!r}"
        )
    loaded = _load_splits(tfds, list(splits), data_dir, download)

    def convert(example):
        return preprocess(example, tasks, image_size)

    datasets = {
        name: split.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
        for name, split in zip(base.SPLITS, loaded, strict=True)
    }
    return base.MultiTaskData(
        name="celeba",
        tasks=tasks,
        num_classes={t: 2 for t in tasks},
        input_shape=(image_size, image_size, 3),
        description=(
            f"CelebA (tfds celeb_a), {len(tasks)} binary attributes, "
            f"{image_size}x{image_size} RGB in [0, 1], standard splits"
        ),
        **datasets,
    )
