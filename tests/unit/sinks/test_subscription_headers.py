from cryptography.fernet import Fernet

from sinks.subscriptions import unseal


def test_a_seq_header_is_read_sealed_or_in_clear_and_an_unreadable_one_is_no_crash():
    sealer = Fernet(Fernet.generate_key())
    assert unseal(sealer, sealer.encrypt(b"42").decode()) == 42
    assert unseal(sealer, "17") == 17                                     # delivered before headers were sealed
    assert unseal(sealer, Fernet(Fernet.generate_key()).encrypt(b"5").decode()) is None   # another key
    assert unseal(sealer, "garbage") is None
    assert unseal(sealer, sealer.encrypt(b"not a number").decode()) is None
