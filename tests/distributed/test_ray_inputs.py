"""What the distributed functions refuse before any Ray job starts (no cluster needed)."""

from __future__ import annotations

import pytest

pytest.importorskip("pyarrow", reason="pyarrow comes with the ray and lancedb extras")
pytest.importorskip("lancedb", reason="the lancedb extra is not installed")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from xm_integrations.distributed import add_encoded  # noqa: E402
from xm_integrations.distributed.ray_encoding import _check_actors_fit, _check_room_to_read  # noqa: E402
from xm_integrations.errors import IndexFormatError, InvalidArgumentError  # noqa: E402
from xm_integrations.index import LanceDBIndex  # noqa: E402


def test_actors_that_would_hold_every_cpu_are_refused_with_the_fix():
    with pytest.raises(InvalidArgumentError, match="all 4 CPUs.*lower num_actors or num_cpus"):
        _check_room_to_read({"CPU": 4.0}, actors=2, cpus=2)
    _check_room_to_read({"CPU": 4.0}, actors=3, cpus=1)  # one CPU left to read


def test_actors_no_node_can_hold_are_refused_instead_of_waiting_forever():
    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 16.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    with pytest.raises(InvalidArgumentError, match="asks for 8 CPU.*and 1 GPU.*largest node .* has 4 CPU.*and 1 GPU"):
        _check_actors_fit(nodes, actors=1, cpus=8, gpus=1)  # the 16-CPU node has no GPU, the 8-GPU one is dead
    with pytest.raises(InvalidArgumentError, match="2 encoder actor.*1 GPU.*more than the 1 GPU"):
        _check_actors_fit(nodes, actors=2, cpus=1, gpus=1)
    _check_actors_fit(nodes, actors=1, cpus=4, gpus=1)
    _check_actors_fit(nodes, actors=2, cpus=8, gpus=0)  # CPU actors fit the 16-CPU node


def test_files_not_written_by_encode_with_ray_are_refused_and_nothing_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="no .parquet files"):
        add_encoded(LanceDBIndex(tmp_path / "index"), tmp_path / "empty")
    foreign = pa.table({"id": ["a"], "text": ["x"], "language": ["en_XX"], "metadata": ["{}"],
                        "vectors": [[[0.0, 1.0]]], "error": pa.array([None], pa.string())})
    pq.write_table(foreign, tmp_path / "foreign.parquet")
    with pytest.raises(IndexFormatError, match="not written by encode_with_ray"):
        add_encoded(LanceDBIndex(tmp_path / "index"), tmp_path / "foreign.parquet")
    assert not (tmp_path / "index").exists()
