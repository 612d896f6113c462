"""The two PostgreSQL clusters' own settings (no server started)."""

from kintsmesh.settings import Settings
from kintsmesh.stack.postgres import Departments, Postgres


def test_only_the_departments_cluster_decodes_its_wal(tmp_path):
    settings = Settings(stack_dir=tmp_path)
    assert "wal_level = logical" in Departments(settings).config
    assert "wal_level" not in Postgres(settings).config + Postgres(settings)._earlier_slots()


def test_a_library_cluster_with_an_earlier_installations_slots_keeps_logical_decoding_to_start(tmp_path, capsys):
    library = Postgres(Settings(stack_dir=tmp_path))
    (library.data_dir / "pg_replslot" / "kintsmesh_police").mkdir(parents=True)
    assert "wal_level = logical" in library._earlier_slots()   # PostgreSQL refuses to start slots below it
    assert "drop them" in capsys.readouterr().out
