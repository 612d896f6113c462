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
