"""Tests for misc/config.py: defaults, strict YAML merge, overrides, error messages."""
import pytest

from misc.config import default_config, load_config, parse_override, save_config
from misc.errors import ConfigError


def write(tmp_path, text, name="cfg.yml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_match_the_original():
    cfg = default_config()
    assert cfg.DATASET_NAME == "birds" and cfg.EMBEDDING_TYPE == "cnn-rnn" and cfg.Z_DIM == 100
    assert cfg.TRAIN.BATCH_SIZE == 64 and cfg.TRAIN.NUM_COPY == 4 and cfg.TRAIN.MAX_EPOCH == 600
    assert cfg.TRAIN.SNAPSHOT_INTERVAL == 2000 and cfg.TRAIN.PRETRAINED_EPOCH == 600
    assert cfg.TRAIN.DISCRIMINATOR_LR == 2e-4 and cfg.TRAIN.GENERATOR_LR == 2e-4
    assert cfg.TRAIN.NUM_EMBEDDING == 4 and cfg.TRAIN.COEFF.KL == 2.0
    assert cfg.TRAIN.COND_AUGMENTATION is True and cfg.TRAIN.B_WRONG is True
    assert cfg.TRAIN.FINETUNE_LR is False and cfg.TRAIN.FT_LR_RETIO == 0.1
    assert (cfg.GAN.EMBEDDING_DIM, cfg.GAN.DF_DIM, cfg.GAN.GF_DIM) == (128, 64, 128)
    assert cfg.GAN.NETWORK_TYPE == "default"
    assert cfg.TEST.LR_IMSIZE == 64 and cfg.TEST.HR_IMSIZE == 256 and cfg.TEST.NUM_COPY == 16
    # The one deliberate change of default: the paper's 100-epoch halving.
    assert cfg.TRAIN.LR_DECAY_EPOCH == 100


@pytest.mark.parametrize("dataset", ["birds", "flowers"])
def test_stage1_files_hold_the_original_values(dataset):
    cfg = load_config(f"stageI/cfg/{dataset}.yml")
    assert cfg.CONFIG_NAME == "stageI" and cfg.DATASET_NAME == dataset
    assert cfg.TRAIN.MAX_EPOCH == 600 and cfg.TRAIN.LR_DECAY_EPOCH == 100
    assert cfg.TRAIN.BATCH_SIZE == 64 and cfg.TRAIN.COEFF.KL == 2.0
    assert isinstance(cfg.TRAIN.GENERATOR_LR, float)


def test_exponent_floats_and_int_for_float(tmp_path):
    cfg = load_config(write(tmp_path, "TRAIN:\n  GENERATOR_LR: 1e-4\n  COEFF:\n    KL: 1\n"))
    assert cfg.TRAIN.GENERATOR_LR == 1e-4
    assert cfg.TRAIN.COEFF.KL == 1.0 and isinstance(cfg.TRAIN.COEFF.KL, float)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "TRAIN:\n  MAX_EPOCHS: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "'TRAIN.MAX_EPOCHS'" in str(err.value)
    assert "MAX_EPOCH" in str(err.value)  # the valid keys are listed
    assert "\n" not in str(err.value)


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path, "TRAIN:\n  MAX_EPOCH: ten\n")
    with pytest.raises(ConfigError, match=r"cfg\.yml: 'TRAIN.MAX_EPOCH' must be an integer"):
        load_config(path)
    with pytest.raises(ConfigError, match="must be a boolean"):
        load_config(write(tmp_path, "TRAIN:\n  B_WRONG: 1\n"))
    with pytest.raises(ConfigError, match="must be a section"):
        load_config(write(tmp_path, "TRAIN: 3\n"))


@pytest.mark.parametrize("text, message", [
    ("TRAIN:\n  BATCH_SIZE: 0\n", "must be positive"),
    ("SEED: -1\n", "must not be negative"),
    ("GAN:\n  NETWORK_TYPE: simple\n", "must be one of default"),
    ("EMBEDDING_TYPE: glove\n", "must be one of cnn-rnn, skip-thought"),
    ("- a\n- b\n", "must be a mapping"),
    ("TRAIN: [1, 2\n", "not valid YAML at line"),
])
def test_invalid_values(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.yml: no such config file"):
        load_config("nope.yml")


def test_overrides_are_strict_and_typed():
    cfg = load_config("stageI/cfg/birds.yml", overrides={"TRAIN.MAX_EPOCH": 2, "GAN.GF_DIM": 8})
    assert cfg.TRAIN.MAX_EPOCH == 2 and cfg.GAN.GF_DIM == 8
    key, value = parse_override("TRAIN.GENERATOR_LR=2e-4")
    assert key == "TRAIN.GENERATOR_LR" and value == 2e-4
    with pytest.raises(ConfigError, match="--set: unknown key 'TRAIN.NOPE'"):
        load_config(overrides={"TRAIN.NOPE": 1})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("TRAIN.MAX_EPOCH")


def test_config_is_read_only_and_updated_copies():
    cfg = default_config()
    with pytest.raises(AttributeError):
        cfg.Z_DIM = 3
    new = cfg.updated({"Z_DIM": 3})
    assert new.Z_DIM == 3 and cfg.Z_DIM == 100


def test_data_dir():
    assert str(default_config().data_dir()) == "Data/birds"
    assert str(load_config(overrides={"DATA_DIR": "/x/y"}).data_dir()) == "/x/y"


def test_save_then_load_round_trip(tmp_path):
    cfg = load_config("stageI/cfg/flowers.yml", overrides={"SEED": 7})
    save_config(cfg, tmp_path / "config.yml")
    again = load_config(tmp_path / "config.yml")
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("key, value, message", [
    ("GPU_ID", 1, "'GPU_ID' 1 is not used by this port: GPUs are chosen with --gpu"),
    ("TRAIN.FINETUNE_LR", True, "'TRAIN.FINETUNE_LR' True is not ported"),
])
def test_original_keys_that_are_not_ported_are_refused_unless_at_their_default(tmp_path, key, value, message):
    section, _, name = key.rpartition(".")
    text = f"{section}:\n  {name}: {str(value).lower()}\n" if section else f"{name}: {value}\n"
    path = tmp_path / "cfg.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        load_config(path)
    with pytest.raises(ConfigError, match=f"--set: {message}"):
        load_config(None, overrides={key: value})
    assert load_config(None, overrides={key: not value if isinstance(value, bool) else 0})  # the default
