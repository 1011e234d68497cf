"""``opg node run`` configuration: flags > environment > file, prices in OPG decimals, the pricing file, backend
specs, and one readable line (exit 2) for every bad setting. No chain needed: these fail before any network call."""

from __future__ import annotations

from decimal import Decimal

import pytest

from offchain.cli import main as opg
from offchain.daemon.settings import load_settings
from offchain.inference import Pricing
from offchain.node.config import ConfigError, NodeSettings, load_pricing_file, opg_to_wei, parse_backends

DEFAULT = Pricing(base=1, per_prompt_token=2, per_output_token=3)


def main(argv: list[str]) -> int:
    """``opg node ARGS`` in this process: its exit code."""
    return opg(["node", *argv])


def test_help_teaches_with_examples(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("examples:", "--dev-account", "--keystore", "--backend", "proxy:http://", "pricing.toml",
                 "--price-output-token", "OPG_NODE_RELAYER_URL", "--max-unsettled", "PAYMENT-SIGNATURE"):
        assert text in out, text


def test_settings_come_from_flags_then_environment_then_file(tmp_path, monkeypatch):
    config = tmp_path / "node.toml"
    config.write_text('[node]\nrelayer-url = "http://file:1"\nmax-unsettled = "7.5"\nbackend = "builtin"\n'
                      'port = 9000\n')
    monkeypatch.setenv("OPG_NODE_RELAYER_URL", "http://env:2")
    s = load_settings(NodeSettings, {"port": "9100"}, config, section="node")
    assert s.relayer_url == "http://env:2" and s.port == 9100 and s.max_unsettled == Decimal("7.5")
    assert s.max_unsettled_wei == 7_500_000_000_000_000_000
    assert NodeSettings.model_fields["port"].default == 8500
    assert str(NodeSettings.model_fields["store"].default) == "var/node.sqlite3"


def test_opg_decimals_become_wei_exactly():
    assert opg_to_wei("0.0001") == 10**14 and opg_to_wei(Decimal("1")) == 10**18 and opg_to_wei(0) == 0
    assert opg_to_wei("0.000000000000000001") == 1
    for bad in ("-1", "abc", "0.0000000000000000001", "inf"):
        with pytest.raises(ConfigError):
            opg_to_wei(bad)


def test_the_pricing_file_prices_models_over_a_default(tmp_path):
    path = tmp_path / "pricing.toml"
    path.write_text('[default]\nbase = "0.001"\n[models.fast]\noutput-token = "0.00002"\n'
                    '[models."a/b"]\nbase = 0\nprompt-token = "0.5"\n')
    default, models = load_pricing_file(path, DEFAULT)
    assert default == Pricing(base=10**15, per_prompt_token=2, per_output_token=3)
    assert models["fast"] == Pricing(base=10**15, per_prompt_token=2, per_output_token=2 * 10**13)
    assert models["a/b"] == Pricing(base=0, per_prompt_token=5 * 10**17, per_output_token=3)
    path.write_text('[models.fast]\ncolour = "1"\n')
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_pricing_file(path, DEFAULT)
    with pytest.raises(ConfigError, match="does not exist"):
        load_pricing_file(tmp_path / "missing.toml", DEFAULT)


def test_backend_specs_carry_options():
    specs = parse_backends("builtin, builtin?name=slow&token_delay=0.05,proxy:http://gpu:8000/v1#llama-3?timeout=60")
    assert [(s.spec, s.options) for s in specs] == [
        ("builtin", {}), ("builtin", {"name": "slow", "token_delay": 0.05}),
        ("proxy:http://gpu:8000/v1#llama-3", {"timeout": 60})]
    with pytest.raises(ConfigError):
        parse_backends(" , ")


def test_backend_spec_options_keep_keys_and_names_as_text_and_a_proxy_query_in_its_url():
    spec, = parse_backends("proxy:https://gpu/v1?api-version=2024#gpt-4")  # a query of the upstream's URL
    assert (spec.spec, spec.options) == ("proxy:https://gpu/v1?api-version=2024#gpt-4", {})
    spec, = parse_backends("proxy:https://gpu/v1#m?api_key=00123&name=007&timeout=30&")
    assert spec.options == {"api_key": "00123", "name": "007", "timeout": 30}


def test_node_refuses_the_verifiers_scoring_option():
    with pytest.raises(ConfigError, match="scoring is a verifier's option"):
        parse_backends("smollm2?scoring=f32")


@pytest.mark.parametrize("args, message", [
    (["--price-base", "-1"], "invalid setting price_base"),
    (["--max-unsettled", "lots"], "invalid setting max_unsettled"),
    (["--relayer-url", "relayer:8402"], "invalid setting relayer_url"),
    (["--backend", "gpt-5"], "unknown backend spec 'gpt-5'"),
    (["--backend", "builtin,builtin"], "two backends serve the model name 'builtin'"),
    (["--backend", "builtin?cheat_rate=2"], "cheat rate must be between 0 and 1"),
])
def test_a_bad_setting_exits_2_with_one_line(args, message, capsys):
    assert main(["run", "--rpc-url", "http://127.0.0.1:9", "--dev-account", "1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("opg node: error: ") and message in err and "\n" not in err


def test_a_pricing_file_for_a_model_not_served_is_refused(tmp_path, capsys):
    path = tmp_path / "pricing.toml"
    path.write_text('[models.elsewhere]\nbase = "1"\n')
    assert main(["run", "--rpc-url", "http://127.0.0.1:9", "--dev-account", "1", "--pricing", str(path)]) == 2
    assert "prices 'elsewhere', which this node does not serve" in capsys.readouterr().err
