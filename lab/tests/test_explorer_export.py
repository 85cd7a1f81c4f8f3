"""The notebook explorer in an HTML export (nbconvert), as GitHub and a saved page show it: a kernel runs a notebook
that displays one explorer, nbconvert exports it. In the full suite: a kernel and nbconvert cost the core suite,
which must stay under a minute, too much of it."""

from pathlib import Path

from explorer import PLAIN_TEXT

ROOT = Path(__file__).resolve().parents[2]


def test_an_html_export_shows_the_static_picture_with_or_without_widget_state(tmp_path):
    """A notebook whose one cell displays an explorer, run by nbclient (which saves the widget state, as papermill
    does) and exported by nbconvert: the widget's view (blank offline) and the picture as an image, once; the same
    picture once when the state is dropped (as `make run` does)."""
    import nbclient
    import nbformat
    from nbconvert import HTMLExporter

    source = (
        "import torch\nfrom explorer import LatentExplorer\nfrom fashion_mnist import CLASS_NAMES\n"
        "from models import ModelConfig, build_model\nmodel = build_model(ModelConfig(hidden=(16,)), seed=0).eval()\n"
        "LatentExplorer(model, torch.randn(100, 3), torch.arange(100) % 10, CLASS_NAMES)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    assert [output.output_type for output in notebook.cells[0].outputs] == ["display_data", "display_data"]
    assert "application/vnd.jupyter.widget-state+json" in notebook.metadata.widgets
    html = HTMLExporter().from_notebook_node(notebook)[0]
    assert 'type="application/vnd.jupyter.widget-view+json"' in html  # with state, the widget is exported too
    assert html.count('src="data:image/png;base64,') == 1
    notebook.metadata.pop("widgets")
    html = HTMLExporter().from_notebook_node(notebook)[0]
    assert html.count('src="data:image/png;base64,') == 1 and PLAIN_TEXT in html
