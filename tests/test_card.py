"""``steward card``: Markdown and HTML model cards of a version with its whole story and of one
with missing pieces (marked absent), the Annex IV layout, plugin sections, ``--log``, and markup
in names, comments, tags and plugin values rendered as text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_steward import hookimpl
from mlflow_steward.cli.main import cli
from mlflow_steward.plugins import CardSection

pytestmark = pytest.mark.slow

SCRIPT = "<script>alert('card')</script>"
IMG = '<img src=x onerror="alert(1)">'


@pytest.fixture
def world(traced: dict) -> dict:
    """The traced world, with markup in the version's intended use and the model's
    description (written with plain MLflow, as any client with EDIT could)."""
    from mlflow import MlflowClient

    client = MlflowClient(traced["uri"], traced["uri"])
    client.set_model_version_tag("fraud", traced["version"], "intended_use", f"scoring {SCRIPT}")
    client.update_registered_model("fraud", description=f"fraud model {IMG}")
    return traced


def _card(*args: str) -> str:
    result = CliRunner().invoke(cli, ["card", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_markdown_card_of_a_traced_version_has_every_section(world):
    text = _card(f"models:/fraud/{world['version']}", "--format", "md")
    for expected in (
        "# Model card: fraud v1",
        "| Trained by | alice |",
        "| Aliases | @production |",
        f"| fraud-train | training | {world['dataset']} |",
        "| Git commit | 3f2c1d0e9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e |",
        "| Git repository | https://git.example.com/ml/fraud.git |",
        "| C | 0.5 |",
        "| accuracy_score | 0.99",
        "### Feature importance",
        "| approve | @production (set_alias) | bob |",
        r"| set_alias @production | carol | applied | \[metric-threshold\] allow",
        "| fraud-prod | steward-onprem | http://127.0.0.1:",
        "| drift |",
    ):
        assert expected in text, (expected, text)
    # the most important feature comes first: the label is amount > 0
    importance = text.split("### Feature importance", 1)[1]
    assert re.search(
        r"\| Feature \| Importance \(mean\) \| Std \|\n\| --- \| --- \| --- \|\n\| amount \|",
        importance,
    )
    # evidence verified, with each policy's options
    evidence = text.split("### Evidence", 1)[1]
    assert evidence.count("| verified |") == 2
    assert "| metric-threshold | allow |" in evidence
    assert "min=0.9" in evidence
    assert "*Absent" not in text
    # markup is escaped in Markdown too (renderers pass raw HTML through)
    assert SCRIPT not in text
    assert IMG not in text
    assert "&lt;script&gt;" in text
    assert "metrics &lt;b&gt;fine&lt;/b&gt;, approved" in text


def test_html_card_escapes_every_value(world):
    page = _card(f"models:/fraud/{world['version']}", "--format", "html")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<b>fine</b>" not in page
    assert "scoring &lt;script&gt;alert(&#39;card&#39;)&lt;/script&gt;" in page
    assert "fraud model &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    assert "metrics &lt;b&gt;fine&lt;/b&gt;, approved" in page
    assert "data-absent" not in page
    for heading in ("Model details", "Training details", "Evaluation", "Governance", "Deployments"):
        assert f"<h2>{heading}" in page


def test_missing_pieces_are_marked_absent(world):
    text = _card(f"models:/fraud/{world['second']}", "--format", "md")
    for absent in (
        "### Training data\n\n*Absent: the training run logged no dataset (mlflow.log_input).*",
        "### Approvals\n\n*Absent: no review recorded.*",
        "## Deployments\n\n*Absent: never deployed.*",
        "## Monitoring history\n\n*Absent: no monitoring run.*",
        "### Evidence\n\n*Absent: no governed promotion or deploy recorded evidence.*",
    ):
        assert absent in text, (absent, text)
    page = _card(f"models:/fraud/{world['second']}", "--format", "html")
    absent = set(re.findall(r'data-absent="([a-z_]+)"', page))
    assert {"training_data", "approvals", "deployments", "monitoring", "evidence"} <= absent
    assert "evaluation" not in absent  # v2 logged accuracy on its run


def test_annex_iv_layout(world):
    text = _card(f"models:/fraud/{world['version']}", "--format", "md", "--layout", "annex-iv")
    headings = re.findall(r"^## (\d)\. ", text, flags=re.M)
    assert headings == [str(i) for i in range(1, 10)]
    assert "## 5. Description of the risk management system" in text
    assert "### Human oversight: approvals" in text


def test_log_writes_the_card_to_the_source_run(world):
    from mlflow import MlflowClient

    result = CliRunner().invoke(
        cli, ["card", f"models:/fraud/{world['version']}", "--format", "html", "--log"]
    )
    assert result.exit_code == 0, result.output
    path = "steward/cards/card-fraud-v1.html"
    assert f"logged runs:/{world['run_id']}/{path}" in result.output
    local = MlflowClient(world["uri"]).download_artifacts(world["run_id"], path, str(Path.cwd()))
    assert Path(local).read_text().startswith("<!DOCTYPE html>")


class _TeamSections:
    @hookimpl
    def steward_card_sections(self, model, version, lineage):
        yield CardSection(
            title=f"Risk review {SCRIPT}",
            text=f"reviewed for {model} v{version} {IMG}",
            rows=(("owner", "risk@example.com"), ("deployed on", len(lineage["deployments"]))),
        )


class _Broken:
    @hookimpl
    def steward_card_sections(self):
        raise RuntimeError("no risk register")


def test_plugin_sections_render_as_text(world):
    from mlflow_steward.lifecycle.session import StewardSession
    from mlflow_steward.lineage.card import card_data, render
    from mlflow_steward.lineage.records import open_sources
    from mlflow_steward.plugins.manager import create_plugin_manager

    pm = create_plugin_manager(plugins=[_TeamSections()], autoload=False)
    client, records = open_sources(
        world["uri"], None, lambda: StewardSession(registry_uri=world["uri"], pm=pm)
    )
    data = card_data(client, records, pm, "fraud", world["version"])
    assert len(data["extra"]) == 1
    page = render(data, "html")
    assert "<h2>Risk review &lt;script&gt;alert(&#39;card&#39;)&lt;/script&gt;</h2>" in page
    assert "<td>risk@example.com</td>" in page
    assert "<td>1</td>" in page
    assert "<script" not in page.lower()
    md = render(data, "md")
    assert "## Risk review &lt;script&gt;" in md
    assert "| deployed on | 1 |" in md

    broken = create_plugin_manager(plugins=[_Broken()], autoload=False)
    from mlflow_steward.errors import PluginLoadError

    with pytest.raises(
        PluginLoadError,
        match="failed in steward_card_sections\\(\\): RuntimeError: no risk register",
    ):
        card_data(client, records, broken, "fraud", world["version"])


def test_unknown_version_is_one_clear_line(world):
    result = CliRunner().invoke(cli, ["card", "models:/fraud/77"])
    assert result.exit_code == 1
    assert "models:/fraud/77 does not exist" in result.output


def test_markdown_escapes_link_and_table_syntax():
    """Pure rendering: a value cannot become a link, an image, code or extra table cells."""
    from mlflow_steward.lineage.card import Section, render

    sections = {
        key: Section(absent="x")
        for key in (
            "details",
            "considerations",
            "training_data",
            "training_procedure",
            "evaluation",
            "importance",
            "governance",
            "moves",
            "approvals",
            "evidence",
            "deployments",
            "monitoring",
        )
    }
    evil = "[click](javascript:alert(1)) ![i](http://x/y.png) `code` a|b <b>x</b>"
    sections["details"] = Section(text=[evil]).table(["Field", "Value"], [["Owner", evil]])
    data = {
        "model": "m",
        "version": "1",
        "uri": "models:/m/1",
        "generated": "now",
        "sections": sections,
        "extra": [],
    }
    md = render(data, "md")
    escaped = (
        r"\[click\](javascript:alert(1)) !\[i\](http://x/y.png) \`code\` a\|b &lt;b&gt;x&lt;/b&gt;"
    )
    assert f"| Owner | {escaped} |" in md
    assert f"\n{escaped}\n" in md
    assert "[click](" not in md
