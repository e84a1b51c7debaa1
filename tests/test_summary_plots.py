import json

import numpy as np
import pytest

from kwslib.study import plots
from kwslib.errors import ConfigError
from kwslib.summary import load_summary, update_summary


def test_update_summary_deep_merges_and_cleans(tmp_path):
    update_summary(tmp_path, "quick", {"models": {"float": {"accuracy": np.float32(0.5), "parity": np.bool_(True)}}})
    s = update_summary(tmp_path, "quick", {"models": {"stage1_w4": {"accuracy": float("nan"), "n": np.int64(3)}},
                                           "data": {"ci": np.array([0.1, 0.2])}})
    assert s["models"]["float"] == {"accuracy": 0.5, "parity": True}  # kept
    assert s["models"]["stage1_w4"] == {"accuracy": None, "n": 3}  # NaN -> null
    assert s["data"]["ci"] == [pytest.approx(0.1), pytest.approx(0.2)]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["profile"] == "quick" and "created" in on_disk and "git_commit" in on_disk
    assert load_summary(tmp_path)["models"]["stage1_w4"]["n"] == 3


def test_damaged_summary_is_reported(tmp_path):
    (tmp_path / "summary.json").write_text("{not json")
    with pytest.raises(ConfigError, match="damaged summary.json"):
        load_summary(tmp_path)
    with pytest.raises(ConfigError):
        update_summary(tmp_path, "quick", {"a": 1})
    assert (tmp_path / "summary.json").read_text() == "{not json"  # not overwritten
    assert load_summary(tmp_path / "nowhere") == {}


def test_plots_write_pngs(tmp_path):
    hist = [{"epoch": i, "train_loss": 1 / i, "val_loss": 1.1 / i, "train_acc": 0.5, "val_acc": 0.6} for i in (1, 2)]
    plots.training_curve(hist, tmp_path)
    plots.confusion(np.eye(12) * 3, tmp_path)
    curve = {"thresholds": np.linspace(0, 1, 5), "frr": np.linspace(0, 1, 5), "fdph": np.linspace(50, 0, 5),
             "fdr": np.linspace(1, 0.01, 5)}
    plots.det_curves({"a": curve}, op_fdph=10, fig_dir=tmp_path, name="det")
    plots.det_curves({"a": curve}, kind="clip", fig_dir=tmp_path, name="det_clip")
    plots.spectrograms([np.random.rand(98, 40)], ["x"], tmp_path)
    for name in ("training_curve", "confusion", "det", "det_clip", "spectrograms"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_det_curve_shades_the_rates_below_min_events(tmp_path):
    """0.85 h of real speech and 20 events: every rate below 20 / 0.85 = 23.5 FD/h is shaded and labelled."""
    curve = {"thresholds": np.linspace(0, 1, 5), "frr": np.linspace(0, 1, 5), "fdph": np.linspace(50, 0, 5)}
    fig = plots.det_curves({"float": curve}, op_fdph=10, fig_dir=tmp_path, name="det_real", hours=0.85, min_events=20)
    assert (tmp_path / "det_real.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    spans = [pt for pt in ax.patches]
    assert len(spans) == 1
    x0, x1 = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
    assert x0 == 0 and x1 == pytest.approx(20 / 0.85)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "< 20 false detections in 0.85 h (below 23.5/h)" in labels and "operating point (10/h)" in labels
    assert not plots.det_curves({"float": curve}, op_fdph=10).axes[0].patches  # nothing shaded unless asked
    with pytest.raises(ValueError, match="both hours and min_events"):
        plots.det_curves({"float": curve}, hours=0.85)
    with pytest.raises(ValueError, match="hours must be a number > 0"):
        plots.det_curves({"float": curve}, hours=0.0, min_events=20)
    with pytest.raises(ValueError, match="min_events must be an integer >= 1"):
        plots.det_curves({"float": curve}, hours=1.0, min_events=0)
    with pytest.raises(ValueError, match="only apply to kind='stream'"):
        plots.det_curves({"float": curve}, kind="clip", hours=1.0, min_events=20)


def test_negatives_fdph_by_source_is_the_models_view(tmp_path):
    from kwslib.summary import with_views

    update_summary(tmp_path, "p", {"negatives": {"hours": {"real_speech": 0.8}},
                                   "models": {"float": {"fdph_by_source": {"real_speech": 13.0, "noise": 0.0}}}})
    s = update_summary(tmp_path, "p", {"models": {"stage2_w4": {"fdph_by_source": {"real_speech": 15.5, "noise": 1.0}},
                                                  "ptq_w4": {"accuracy": 0.5}}})
    assert s["negatives"] == {"hours": {"real_speech": 0.8},
                              "fdph_by_source": {"float": {"real_speech": 13.0, "noise": 0.0},
                                                 "stage2_w4": {"real_speech": 15.5, "noise": 1.0}}}
    assert load_summary(tmp_path)["negatives"] == s["negatives"]
    # a later run of a notebook that changes a model's reading changes the view with it
    s = update_summary(tmp_path, "p", {"models": {"float": {"fdph_by_source": {"real_speech": 9.0, "noise": 0.0}}}})
    assert s["negatives"]["fdph_by_source"]["float"]["real_speech"] == 9.0
    assert with_views({"models": {"a": {"accuracy": 1.0}}}) == {"models": {"a": {"accuracy": 1.0}}}
    with pytest.raises(ConfigError, match="negatives"):
        with_views({"negatives": [], "models": {"a": {"fdph_by_source": {}}}})
