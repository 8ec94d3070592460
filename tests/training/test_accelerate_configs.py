"""The shipped accelerate configs (configs/accelerate/*.yaml) load with accelerate's own loader and
launcher, and every paper config's launch line names one of them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from unittest import mock

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_multi_gpu_env

REPO = Path(__file__).resolve().parents[2]
FSDP2 = REPO / "configs" / "accelerate" / "fsdp2.yaml"
DDP = REPO / "configs" / "accelerate" / "ddp.yaml"
PAPER = sorted((REPO / "configs" / "paper").glob("*.yaml"))
LAUNCH = re.compile(
    r"accelerate launch --config_file (configs/accelerate/\S+\.yaml) -m raco\.training\.cli_train \\\n"
    r"#\s+--config (configs/paper/\S+\.yaml)"
)


def _launch_env(config: Path, *extra: str) -> tuple:
    """What ``accelerate launch --config_file config ...`` resolves: its arguments and the environment
    it gives each process (no process is started)."""
    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(config), *extra, "-m", "raco.training.cli_train"])
    args, _, _ = _validate_launch_command(args)
    return args, prepare_multi_gpu_env(args)


def test_fsdp2_config_loads_and_asks_for_fsdp2():
    config = load_config_from_file(str(FSDP2))
    assert config.distributed_type == DistributedType.FSDP
    assert config.num_processes == 8 and config.num_machines == 1
    assert config.mixed_precision == "no"  # raco's model.dtype is the one precision switch
    fsdp = config.fsdp_config
    assert fsdp["fsdp_version"] == 2
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert fsdp["fsdp_reshard_after_forward"] is True


def test_fsdp2_config_gives_an_fsdp2_plugin_through_the_launcher():
    """The launcher turns the file into FSDP_* variables, and accelerate's plugin reads them back as
    FSDP2 with transformer-layer wrapping and sharded state dicts (what Accelerator(...) would get)."""
    args, env = _launch_env(FSDP2, "--num_processes", "1")
    assert args.use_fsdp and args.num_processes == 1  # the flag overrides the file's 8
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert plugin.mixed_precision_policy is None


def test_ddp_config_loads_as_multi_gpu():
    config = load_config_from_file(str(DDP))
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert config.num_processes == 8 and config.mixed_precision == "no"
    args, env = _launch_env(DDP)
    assert args.multi_gpu and not args.use_fsdp and env["ACCELERATE_MIXED_PRECISION"] == "no"


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_every_paper_config_names_its_launch_line_and_fsdp2_config(path):
    match = LAUNCH.search(path.read_text())
    assert match, f"{path.name}: no `accelerate launch --config_file ... --config ...` line"
    config, itself = match.groups()
    assert config == "configs/accelerate/fsdp2.yaml" and (REPO / config).is_file()
    assert itself == f"configs/paper/{path.name}"
