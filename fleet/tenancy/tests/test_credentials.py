from fleet.tenancy import credentials


def test_generated_secrets_pass_their_checksum_and_are_distinct():
    secrets = [credentials.generate(prefix="sk_live_") for _ in range(10_000)]
    assert len(set(secrets)) == len(secrets)
    assert all(credentials.is_well_formed(secret=s, prefix="sk_live_") for s in secrets)


def test_a_single_changed_character_breaks_the_checksum():
    secret = credentials.generate(prefix="sk_live_")
    position = len("sk_live_") + 5
    replacement = "A" if secret[position] != "A" else "B"
    typo = secret[:position] + replacement + secret[position + 1 :]
    assert not credentials.is_well_formed(secret=typo, prefix="sk_live_")


def test_wrong_prefix_length_or_alphabet_is_rejected():
    secret = credentials.generate(prefix="sk_live_")
    assert not credentials.is_well_formed(secret=secret, prefix="dk_")
    assert not credentials.is_well_formed(secret=secret[:-1], prefix="sk_live_")
    assert not credentials.is_well_formed(secret=secret[:-6] + "!!!!!!", prefix="sk_live_")
    assert not credentials.is_well_formed(secret=None, prefix="sk_live_")


def test_hash_is_sha256_and_display_prefix_is_short():
    secret = credentials.generate(prefix="sk_live_")
    assert len(credentials.hash_secret(secret)) == 64
    assert credentials.matches(secret=secret, secret_hash=credentials.hash_secret(secret))
    assert credentials.display_prefix(secret=secret, prefix="sk_live_") == secret[:16]
