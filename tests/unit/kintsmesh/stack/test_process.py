import os
import subprocess
import sys

from kintsmesh.stack.process import owned_pid, spawn, terminate


def test_a_pid_file_counts_only_for_a_process_that_names_the_stack(tmp_path):
    pid_file = tmp_path / "x.pid"
    pid = spawn([sys.executable, "-c", "import time; time.sleep(30)", str(tmp_path)], tmp_path / "x.log", pid_file, cwd=tmp_path)
    try:
        assert owned_pid(pid_file, str(tmp_path)) == pid
        assert owned_pid(pid_file, "/some/other/stack") is None   # a reused pid is not ours
    finally:
        terminate(pid, timeout_s=5)
    assert owned_pid(pid_file, str(tmp_path)) is None


def test_a_stale_pid_file_is_not_ours(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid_file = tmp_path / "y.pid"
    pid_file.write_text(done.stdout)
    assert owned_pid(pid_file, str(tmp_path)) is None
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but its command line does not name the stack
    assert owned_pid(pid_file, str(tmp_path)) is None


def test_reset_deletes_the_logs_with_the_data(tmp_path):
    from kintsmesh import stack
    from kintsmesh.settings import Settings

    settings = Settings(stack_dir=tmp_path)
    (tmp_path / "logs").mkdir()
    logs = [component.log_file for component in stack.components(settings)]
    for log in logs:
        log.write_text("Traceback (most recent call last): an earlier stack's\n")
    (tmp_path / "logs" / "demo-notes.txt").write_text("not a component's log\n")
    stack.reset(settings)
    assert not any(log.exists() for log in logs)
    assert (tmp_path / "logs" / "demo-notes.txt").exists()


def test_kraft_cluster_ids_never_read_as_an_option(monkeypatch):
    import base64
    import uuid

    from kintsmesh.stack import jvm

    # the first UUID drawn encodes to an id starting with '-' (0xf8...: '-' is 62 in URL-safe base64)
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(jvm.uuid, "uuid4", lambda: next(drawn))
    cluster_id = jvm.kraft_cluster_id()
    assert not cluster_id.startswith("-") and cluster_id.startswith("AQ")
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert base64.urlsafe_b64encode(b"\xf8" + bytes(15)).decode().startswith("-")   # the case it skipped


def test_three_brokers_are_one_kraft_quorum_replicating_everything_three_times(tmp_path):
    from kintsmesh.settings import Settings
    from kintsmesh.stack.components import Connect, components

    three = Settings(stack_dir=tmp_path, kafka_brokers=3)
    brokers = [c for c in components(three) if c.name.startswith("kafka")]
    assert [(b.name, b.port) for b in brokers] == [("kafka", 19092), ("kafka2", 19094), ("kafka3", 19096)]
    second = brokers[1].properties()
    assert second["node.id"] == 2
    assert second["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert second["listeners"] == "BROKER://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    assert (second["default.replication.factor"], second["min.insync.replicas"]) == (3, 2)
    assert second["offsets.topic.replication.factor"] == 3 and second["transaction.state.log.min.isr"] == 2
    assert three.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert Connect(three).properties()["config.storage.replication.factor"] == 3
    one = Settings(stack_dir=tmp_path)
    assert [c.name for c in components(one) if c.name.startswith("kafka")] == ["kafka"]
    assert (one.replication_factor, one.min_insync_replicas, one.kafka_bootstrap) == (1, 1, "127.0.0.1:19092")
