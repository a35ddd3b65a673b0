"""Tests of misc/datasets.py: loading and validating a split, and the original's sampling rules."""
import numpy as np
import pytest

from misc.datasets import (EMBEDDING_FILES, BatchFeeder, BatchSampler, SplitData, crop_flip, load_split,
                           visualization_batch)
from misc.errors import ConfigError, DataError
from misc.pickle_io import dump_pickle
from tiny_data import caption_text, make_synthetic_split, python2_pickle_bytes


def to_unit(images):
    return images.astype(np.float32) * np.float32(2 / 255) - np.float32(1)


# ---------------------------------------------------------------- loading

def test_load_split_on_tiny_birds(tiny_birds):
    train = load_split(tiny_birds, "train", 76, text_dim=16)
    assert train.images.shape == (18, 76, 76, 3) and train.images.dtype == np.uint8
    assert train.embeddings.shape == (18, 10, 16) and train.embeddings.dtype == np.float32
    assert train.class_ids.dtype == np.int64 and sorted(set(train.class_ids)) == [1, 2, 3]
    assert train.filenames[0].startswith("001.Black_footed_Albatross/")
    assert (len(train), train.image_size, train.captions_per_image, train.embedding_dim) == (18, 76, 10, 16)
    test = load_split(tiny_birds, "test", 304)
    assert test.images.shape == (12, 304, 304, 3) and sorted(set(test.class_ids)) == [4, 5]
    assert test.captions(3) == [caption_text(test.filenames[3], c) for c in range(10)]
    assert test.caption(3, 7) == caption_text(test.filenames[3], 7)


def test_flowers_caption_path_and_missing_captions(tmp_path):
    data = make_synthetic_split(n=2, class_size=1, data_dir=tmp_path)
    data.filenames = ["jpg/image_00007", "jpg/image_00008"]
    data.class_ids = np.array([5, 102])
    path = tmp_path / "text_c10" / "class_00102" / "image_00008.txt"
    assert data.caption_path(1) == path
    with pytest.raises(DataError, match=f"{path}: caption file not found"):
        data.captions(1)
    path.parent.mkdir(parents=True)
    path.write_text("  a pink flower \r\n\n\nwith five petals\n")
    assert data.captions(1) == ["a pink flower", "with five petals"]
    with pytest.raises(DataError, match="has 2 captions but the embeddings have 10 per image"):
        data.caption(1, 4)


def write_split(root, n=4, size=8, emb_shape=(10, 6), names=None):
    """A minimal valid split under root/train made with dump_pickle; returns root."""
    split = root / "train"
    rng = np.random.default_rng(0)
    dump_pickle(names or [f"001.A/A_{i}" for i in range(n)], split / "filenames.pickle")
    dump_pickle([1] * n, split / "class_info.pickle")
    dump_pickle(rng.standard_normal((n, *emb_shape)).astype(np.float64),
                split / EMBEDDING_FILES["cnn-rnn"])
    dump_pickle([rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)],
                split / f"{size}images.pickle")
    return root


def test_minimal_split_loads_and_casts(tmp_path):
    data = load_split(write_split(tmp_path), "train", 8, text_dim=6)
    assert data.embeddings.dtype == np.float32 and data.embeddings.shape == (4, 10, 6)


@pytest.mark.parametrize("file,hint", [
    ("filenames.pickle", "download the StackGAN cnn-rnn embeddings"),
    ("class_info.pickle", "download the StackGAN cnn-rnn embeddings"),
    ("char-CNN-RNN-embeddings.pickle", "download the StackGAN cnn-rnn embeddings"),
    ("8images.pickle", "run `python misc/data/preprocess_birds.py --data_dir"),
])
def test_missing_files(tmp_path, file, hint):
    root = write_split(tmp_path)
    (root / "train" / file).unlink()
    with pytest.raises(DataError) as err:
        load_split(root, "train", 8)
    assert str(err.value).startswith(f"{root / 'train' / file}: file not found; {hint}")


def test_missing_images_hint_names_the_flowers_script(tmp_path):
    root = write_split(tmp_path, names=[f"jpg/image_{i:05d}" for i in range(1, 5)])
    (root / "train" / "8images.pickle").unlink()
    with pytest.raises(DataError, match="misc/data/preprocess_flowers.py"):
        load_split(root, "train", 8)
    with pytest.raises(DataError, match="76images.pickle: file not found"):
        load_split(root, "train", 76)


def test_skip_thought_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="skip-thought-embeddings.pickle: file not found"):
        load_split(write_split(tmp_path), "train", 8, embedding_type="skip-thought")
    with pytest.raises(ConfigError, match="EMBEDDING_TYPE 'glove' is unknown"):
        load_split(tmp_path, "train", 8, embedding_type="glove")


def test_lengths_that_disagree_name_both_files(tmp_path):
    root = write_split(tmp_path)
    split = root / "train"
    cases = [
        ("class_info.pickle", [1, 1, 1], "has 3 entries"),
        ("char-CNN-RNN-embeddings.pickle", np.zeros((5, 10, 6), np.float32), "has 5 embedding rows"),
        ("8images.pickle", [np.zeros((8, 8, 3), np.uint8)] * 3, "has 3 images"),
    ]
    for file, bad, what in cases:
        good = (split / file).read_bytes()
        dump_pickle(bad, split / file)
        with pytest.raises(DataError) as err:
            load_split(root, "train", 8)
        assert str(err.value) == f"{split / file}: {what} but {split / 'filenames.pickle'} has 4 filenames"
        (split / file).write_bytes(good)


@pytest.mark.parametrize("file,bad,match", [
    ("filenames.pickle", {"a": 1}, "expected a list of file names, got dict"),
    ("filenames.pickle", ["a", 3, "b", "c"], "expected a list of file name strings"),
    ("class_info.pickle", ["x", "y", "z", "w"], "expected a list of integer class ids"),
    ("class_info.pickle", [[1], [2, 3], [4], [5]], "expected a list of integer class ids"),
    ("char-CNN-RNN-embeddings.pickle", np.zeros((4, 10, 6, 2), np.float32), r"shape \(N, 10, D\)"),
    ("char-CNN-RNN-embeddings.pickle", np.zeros((4, 10, 6), np.int64), "got dtype int64"),
    ("char-CNN-RNN-embeddings.pickle", [np.zeros((10, 6)), np.zeros((9, 6))] * 2,
     "cannot be stacked"),
    ("8images.pickle", [np.zeros((8, 8, 3), np.float32)] * 4, "image 0 is float32"),
    ("8images.pickle", [np.zeros((8, 8, 3), np.uint8)] * 3 + [np.zeros((9, 8, 3), np.uint8)],
     r"image 3 is uint8 \(9, 8, 3\), expected uint8 \(8, 8, 3\) images"),
    ("8images.pickle", [np.zeros((8, 8), np.uint8)] * 4, "image 0 is uint8 "),
    ("8images.pickle", np.zeros((4, 8, 8, 3), np.float64), "holds a float64 array"),
    ("8images.pickle", np.zeros((4, 7, 7, 3), np.uint8), r"shape \(4, 7, 7, 3\)"),
    ("8images.pickle", "not images", "holds a str"),
])
def test_malformed_files(tmp_path, file, bad, match):
    root = write_split(tmp_path)
    dump_pickle(bad, root / "train" / file)
    with pytest.raises(DataError, match=match) as err:
        load_split(root, "train", 8)
    assert str(err.value).startswith(str(root / "train" / file))


def test_embedding_size_check_and_2d_embeddings(tmp_path):
    root = write_split(tmp_path)
    with pytest.raises(DataError, match="embeddings have size 6 but the config's TEXT.DIMENSION is 1024"):
        load_split(root, "train", 8, text_dim=1024)
    # Skip-thought style (N, D): one caption per image, which the original crashed on.
    flat = np.arange(24, dtype=np.float64).reshape(4, 6)
    dump_pickle(flat, root / "train" / EMBEDDING_FILES["skip-thought"])
    data = load_split(root, "train", 8, embedding_type="skip-thought", text_dim=6)
    assert data.embeddings.shape == (4, 1, 6) and data.embeddings.dtype == np.float32
    batch = BatchSampler(data, 2, 8, num_embedding=4, seed=0).next_batch()
    np.testing.assert_array_equal(batch["embeddings"], flat[batch["indices"]].astype(np.float32))
    assert batch["caption_ids"].shape == (2, 1)


def test_python2_split_files_load(tmp_path):
    root = write_split(tmp_path)
    emb = np.random.default_rng(3).standard_normal((4, 10, 6)).astype(np.float32)
    (root / "train" / "char-CNN-RNN-embeddings.pickle").write_bytes(python2_pickle_bytes(emb))
    (root / "train" / "class_info.pickle").write_bytes(python2_pickle_bytes([7, 7, 8, 8]))
    data = load_split(root, "train", 8)
    np.testing.assert_array_equal(data.embeddings, emb)
    np.testing.assert_array_equal(data.class_ids, [7, 7, 8, 8])


# ---------------------------------------------------------------- sampling

def test_embeddings_are_the_mean_of_distinct_captions():
    data = make_synthetic_split(n=40, emb_dim=5)
    for k in (4, 2, 1):
        sampler = BatchSampler(data, 8, 8, num_embedding=k, seed=1)
        for _ in range(5):
            batch = sampler.next_batch()
            ids = batch["caption_ids"]
            assert ids.shape == (8, k) and ids.min() >= 0 and ids.max() < 10
            assert all(len(set(row)) == k for row in ids)
            expected = data.embeddings[batch["indices"][:, None], ids].mean(axis=1)
            np.testing.assert_allclose(batch["embeddings"], expected, rtol=1e-6, atol=1e-7)
            assert batch["embeddings"].shape == (8, 5) and batch["embeddings"].dtype == np.float32
    single = BatchSampler(data, 8, 8, num_embedding=1, seed=2).next_batch()
    np.testing.assert_array_equal(single["embeddings"],
                                  data.embeddings[single["indices"], single["caption_ids"][:, 0]])
    # More captions asked for than exist: all of them are averaged.
    capped = BatchSampler(data, 8, 8, num_embedding=25, seed=0)
    assert capped.num_embedding == 10
    batch = capped.next_batch()
    np.testing.assert_allclose(batch["embeddings"], data.embeddings[batch["indices"]].mean(axis=1),
                               rtol=1e-6, atol=1e-7)
    # Every caption is drawn: the choice is not stuck on a subset.
    ids = np.concatenate([BatchSampler(data, 8, 8, 4, seed=s).next_batch()["caption_ids"].ravel()
                          for s in range(10)])
    assert set(ids) == set(range(10))


def test_wrong_images_come_from_another_class():
    data = make_synthetic_split(n=300, class_size=10, image_size=8)
    sampler = BatchSampler(data, 32, 8, seed=0)
    collisions = 0
    shifts = set()
    for _ in range(60):
        b = sampler.next_batch()
        draws, shift, real = b["wrong_draws"], b["wrong_shift"], b["indices"]
        assert 100 <= shift < 200
        shifts.add(shift)
        collide = data.class_ids[draws] == data.class_ids[real]
        np.testing.assert_array_equal(b["wrong_indices"][~collide], draws[~collide])
        np.testing.assert_array_equal(b["wrong_indices"][collide], (draws[collide] + shift) % 300)
        collisions += collide.sum()
        # Classes of 10 images: a shift of 100..199 always lands in another class.
        assert np.all(data.class_ids[b["wrong_indices"]] != data.class_ids[real])
    assert collisions > 10 and len(shifts) > 20
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(b["wrong_indices"], b["indices"])


def test_wrong_image_collision_survives_the_shift():
    # Documented rare case: one shift, no second check. With a single class every draw collides
    # and the shifted index is still the same class.
    data = make_synthetic_split(n=150, class_size=150, image_size=8)
    b = BatchSampler(data, 16, 8, seed=0).next_batch()
    np.testing.assert_array_equal(b["wrong_indices"], (b["wrong_draws"] + b["wrong_shift"]) % 150)
    assert np.all(data.class_ids[b["wrong_indices"]] == data.class_ids[b["indices"]])


def test_crop_flip_and_scaling_are_the_originals():
    data = make_synthetic_split(n=50, image_size=12)
    sampler = BatchSampler(data, 25, 8, seed=3)
    offsets, flips = [], []
    for _ in range(40):
        b = sampler.next_batch()
        for prefix, idx in (("", b["indices"]), ("wrong_", b["wrong_indices"])):
            images, offs, flip = b[prefix + "images"], b[prefix + "crop_offsets"], b[prefix + "flips"]
            assert images.dtype == np.float32 and images.shape == (25, 8, 8, 3)
            for k, i in enumerate(idx):
                row, col = offs[k]
                crop = data.images[i, row:row + 8, col:col + 8]
                expected = to_unit(crop[:, ::-1] if flip[k] else crop)
                np.testing.assert_array_equal(images[k], expected)
            offsets.append(offs)
            flips.append(flip)
    offsets, flips = np.concatenate(offsets), np.concatenate(flips)
    # floor((S - s) * U[0, 1)): 0..S-s-1 per axis, the last offset S-s never drawn.
    for axis in (0, 1):
        assert offsets[:, axis].min() == 0 and offsets[:, axis].max() == 12 - 8 - 1
    assert 0.45 < flips.mean() < 0.55
    # Flipped crops really are mirrored (not equal to the unflipped crop).
    b = sampler.next_batch()
    k = int(np.argmax(b["flips"]))
    row, col = b["crop_offsets"][k]
    assert not np.array_equal(b["images"][k], to_unit(data.images[b["indices"][k], row:row + 8, col:col + 8]))


def test_crop_flip_without_flips_draws_the_same_crops_unmirrored():
    data = make_synthetic_split(n=50, image_size=12)
    indices = np.arange(40)
    flipped, offsets, flips = crop_flip(data.images, indices, 8, np.random.default_rng(5))
    plain, plain_offsets, no_flips = crop_flip(data.images, indices, 8, np.random.default_rng(5), flip=False)
    assert flips.any() and not no_flips.any()
    np.testing.assert_array_equal(plain_offsets, offsets)  # the offsets are drawn first either way
    for k, i in enumerate(indices):
        row, col = offsets[k]
        np.testing.assert_array_equal(plain[k], data.images[i, row:row + 8, col:col + 8])
        np.testing.assert_array_equal(flipped[k], plain[k][:, ::-1] if flips[k] else plain[k])


def test_scaling_maps_0_and_255_to_minus_one_and_one():
    data = make_synthetic_split(n=4, image_size=8)
    data.images[:2] = 0
    data.images[2:] = 255
    b = BatchSampler(data, 4, 8, seed=0).next_batch()
    expected = np.where(np.isin(b["indices"], [0, 1]), -1.0, 1.0)
    np.testing.assert_array_equal(b["images"].reshape(4, -1).min(axis=1), expected)
    np.testing.assert_array_equal(b["images"].reshape(4, -1).max(axis=1), expected)
    assert b["images"].min() >= -1 and b["images"].max() <= 1


def test_epochs_are_permutations_with_the_tail_skipped():
    data = make_synthetic_split(n=10, image_size=8)
    sampler = BatchSampler(data, 3, 8, seed=5)
    assert sampler.steps_per_epoch == 3 and sampler.epochs_completed == -1
    epochs = []
    for _ in range(4):
        epoch = [sampler.next_batch()["indices"] for _ in range(sampler.steps_per_epoch)]
        seen = np.concatenate(epoch)
        assert len(seen) == 9 and len(set(seen)) == 9  # no repeats, one image skipped
        epochs.append(seen)
    assert sampler.epochs_completed == 3
    assert len({tuple(e) for e in epochs}) == 4  # a new permutation every epoch


def test_same_seed_same_batches():
    data = make_synthetic_split(n=30, image_size=10)

    def run(seed):
        sampler = BatchSampler(data, 4, 8, seed=seed)
        return [sampler.next_batch() for _ in range(9)]

    for a, b in zip(run(7), run(7)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert not all(np.array_equal(a["images"], b["images"]) for a, b in zip(run(7), run(8)))


def test_sampler_errors():
    data = make_synthetic_split(n=10, image_size=8)
    with pytest.raises(DataError, match=r"train split has 10 images, fewer than one batch of 11"):
        BatchSampler(data, 11, 8)
    with pytest.raises(DataError, match="8images.pickle: images are 8 px, smaller than the 9 px crop"):
        BatchSampler(data, 2, 9)
    with pytest.raises(ConfigError):
        BatchSampler(data, 2, 8, num_embedding=0)


def test_a_batch_is_a_function_of_the_seed_and_its_index():
    data = make_synthetic_split(n=20, image_size=10, emb_dim=6)
    sampler = BatchSampler(data, 4, 8, num_embedding=2, seed=3)
    sequence = [sampler.next_batch() for _ in range(12)]  # three epochs of 5 batches: crosses two
    resumed = BatchSampler(data, 4, 8, num_embedding=2, seed=3, start=7)
    for k in (7, 8, 11):
        again = resumed.next_batch() if k < 9 else BatchSampler(data, 4, 8, num_embedding=2, seed=3).batch(k)
        for key, value in sequence[k].items():
            np.testing.assert_array_equal(again[key], value, err_msg=f"batch {k} {key}")


def test_a_share_is_those_rows_of_the_global_batch():
    data = make_synthetic_split(n=20, image_size=10, emb_dim=6)
    sampler = BatchSampler(data, 4, 8, num_embedding=2, seed=3)
    whole = sampler.batch(6)
    halves = [sampler.batch(6, slice(0, 2)), sampler.batch(6, slice(2, 4))]
    for key in ("images", "wrong_images", "embeddings", "indices", "wrong_indices", "caption_ids", "flips"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key], err_msg=key)
    assert halves[0]["wrong_shift"] == halves[1]["wrong_shift"] == whole["wrong_shift"]


def test_feeder_yields_each_replicas_share_with_its_global_batch_and_first_row():
    data = make_synthetic_split(n=20, image_size=10, emb_dim=6)
    sampler = BatchSampler(data, 4, 8, num_embedding=4, seed=11)
    with BatchFeeder(data, 4, 8, num_embedding=4, seed=11, start=3, shares=[(0, 2), (2, 2)]) as feeder:
        dataset = feeder.dataset()
        images_spec, wrong_spec, emb_spec, step_spec = dataset.element_spec
        assert images_spec.shape == (2, 8, 8, 3) and emb_spec.shape == (2, 6)
        got = [tuple(element) for element in dataset.take(6)]  # batches 3, 4, 5 (an epoch boundary), two shares each
    for n, (images, wrong, emb, step) in enumerate(got):
        k, first = 3 + n // 2, (n % 2) * 2
        assert (int(step["iteration"]), int(step["first_row"])) == (k, first)
        want = sampler.batch(k, slice(first, first + 2))
        np.testing.assert_array_equal(images.numpy(), want["images"])
        np.testing.assert_array_equal(wrong.numpy(), want["wrong_images"])
        np.testing.assert_array_equal(emb.numpy(), want["embeddings"])
    assert not feeder._thread.is_alive()
    with pytest.raises(DataError, match="fewer than one batch of 21"):
        BatchFeeder(data, 21, 8)
    with pytest.raises(ValueError, match="not equal slices"):
        BatchFeeder(data, 4, 8, shares=[(0, 3), (3, 1)])


def test_visualization_batch(tiny_birds):
    test = load_split(tiny_birds, "test", 76)
    rows = visualization_batch(test, 5, 64, num_embedding=1, seed=0)
    assert rows["images"].shape == (5, 64, 64, 3) and rows["images"].dtype == np.float32
    assert rows["images"].min() >= -1 and rows["images"].max() <= 1
    assert len(set(rows["indices"])) == 5
    ids = rows["caption_ids"][:, 0]
    assert rows["captions"] == [caption_text(test.filenames[i], c) for i, c in zip(rows["indices"], ids)]
    np.testing.assert_array_equal(rows["embeddings"], test.embeddings[rows["indices"], ids])
    again = visualization_batch(test, 5, 64, num_embedding=1, seed=0)
    np.testing.assert_array_equal(again["images"], rows["images"])

    train = load_split(tiny_birds, "train", 76)
    rows = visualization_batch(train, 4, 64, num_embedding=4, seed=1)
    assert rows["captions"] == [caption_text(train.filenames[i], 0) for i in rows["indices"]]
    np.testing.assert_allclose(
        rows["embeddings"], train.embeddings[rows["indices"][:, None], rows["caption_ids"]].mean(axis=1),
        rtol=1e-6)
    with pytest.raises(DataError, match="has 18 images, fewer than one batch of 19"):
        visualization_batch(train, 19, 64, 4, 0)


def test_split_data_rejects_inconsistent_arrays():
    data = make_synthetic_split(n=4)
    with pytest.raises(ValueError, match="inconsistent SplitData"):
        SplitData(data.data_dir, "train", data.images, data.embeddings[:3], data.filenames, data.class_ids)
