"""Distillation: train a small student to imitate the model, and compare it with the same student trained alone."""
import time

import streamlit as st

import compressor as cz
from compressor.distillation import parameter_count
from compressor.figures.distillation import (
    accuracy_curves, loss_curves, soft_targets, soft_targets_info, telling_example,
)
from ui import cache, points
from ui import distillation_cache as students
from ui.display import format_bytes, latency_caption, metric_row, user_errors
from ui.session import model_picker

WIDTHS = [round(0.05 * i, 2) for i in range(1, 21)]  # width multiplier stops: 5%, 10%, ..., 100%
DEFAULT_WIDTH = {"digits-mlp": 0.4, "digits-cnn": 0.5}  # about a quarter of the teacher's parameters each
TEMPERATURES = [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0]
ALPHAS = [round(0.05 * i, 2) for i in range(21)]
BATCH_SIZES = [16, 32, 64, 128, 256]
AUTO_TRAIN_S = 2.0  # train without a click when earlier runs on this server say it takes at most this long
LIVE_REFRESH_S = 0.5  # redraw the live curves at most this often (the bar moves every epoch; a redraw costs ~50 ms)

st.set_page_config(page_title="Distillation · Compression Lab", page_icon="🎓", layout="wide")
name = model_picker()
if cache.is_embedding(name):  # students here are classifiers trained on logits; an encoder needs its own student
    st.title("🎓 Distillation")
    st.info(f"{name} is a sentence encoder: this page's students learn a classifier's softened logits, so it has "
            "no student for it. Its distillation is on the Pruning, Quantization and Pipeline pages: turn on "
            "fine-tuning and the compressed encoder learns to reproduce the uncompressed embeddings "
            "(loss 1 − cosine).", icon="🧭")
    st.stop()


def controls() -> students.Settings:
    """The sidebar controls, read into the settings of the two students."""
    defaults = students.Settings()
    with st.sidebar:
        st.subheader("🎓 Distillation")
        width = st.select_slider(
            "Student width", WIDTHS, value=DEFAULT_WIDTH.get(name, 0.5), key=f"distill_width_{name}",
            format_func=lambda w: f"{w:.0%}",
            help="Every hidden size (neurons, channels) of the teacher's architecture times this; parameters "
                 "shrink roughly as width².",
        )
        temperature = st.select_slider("Temperature T", TEMPERATURES, value=defaults.temperature, key="distill_T",
                                       format_func=lambda t: f"{t:g}",
                                       help="Softens the teacher's probabilities: softmax(z / T).")
        alpha = st.select_slider("α (weight of the teacher's soft targets)", ALPHAS, value=defaults.alpha,
                                 key="distill_alpha", help="1 − α goes to the hard labels. α = 0 is scratch training.")
        epochs = st.slider("Epochs (both students)", 1, 100, defaults.epochs, key="distill_epochs")
        with st.expander("Optimizer"):
            lr = st.number_input("Learning rate", 0.0, 1.0, defaults.lr, 1e-3, format="%.4f", key="distill_lr",
                                 help="Adam step size, the same for both students.")
            batch_size = st.select_slider("Batch size", BATCH_SIZES, defaults.batch_size, key="distill_batch")
            seed = st.number_input("Seed", 0, 10_000, defaults.seed, key="distill_seed",
                                   help="Initialises the student (the same one for KD and scratch) and orders batches.")
    return students.Settings(width, temperature, alpha, epochs, lr, batch_size, int(seed))


settings = controls()
key = settings.key(name)
teacher = cache.sample(name)
baseline = cache.report(name, cache.recipe_key(cz.Recipe()))

st.title("🎓 Distillation")
left, right = st.columns([10, 11])
with left:
    st.markdown(
        "A large **teacher** (the picked model) trains a small **student**: besides the true labels, the student "
        "learns to reproduce the teacher's whole output distribution, softened by a temperature T. Those soft "
        "targets carry what the labels do not — *this 3 looks a bit like an 8* — so the student learns more from "
        "each example. The loss mixes the two, with T² keeping the soft term's gradients as large as the hard "
        "term's whatever T is:"
    )
    st.latex(r"\begin{aligned} L = {} & \alpha\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(z_t/T)\,\big\|\,"
             r"\mathrm{softmax}(z_s/T)\big) \\ & + (1-\alpha)\,\mathrm{CE}(z_s, y) \end{aligned}")
    st.markdown(
        "At T = 1 a confident teacher gives almost all probability to one class, which says little more than the "
        "label; dividing the logits by T > 1 lifts the small probabilities so the student can see them. The "
        "comparison is the **same student** (same initial weights, seed and epochs) trained on the labels alone."
    )
with right:
    logits = students.test_logits(name)  # (N, C)
    test = teacher.data.test
    example = telling_example(logits, test.y.numpy())
    label = int(test.y[example])
    st.plotly_chart(soft_targets(logits[example], settings.temperature, label, test.X[example].numpy()),
                    width="stretch", key="distill_soft_chart")
    targets = soft_targets_info(logits[example], settings.temperature, label)
    runner_up = sorted(targets.classes, key=lambda c: targets.sharp[c])[-2]
    st.caption(
        f"Test example {example}, a {label}. At T = 1 the teacher gives {targets.sharp[label]:.0%} to {label} and "
        f"{targets.sharp[runner_up]:.0%} to {runner_up}; at T = {settings.temperature:g}, {targets.soft[label]:.0%} and "
        f"{targets.soft[runner_up]:.0%}, and every other class becomes visible too. Move T in the sidebar."
    )

with user_errors():
    student_params = students.student_params(name, settings.width)
teacher_params = parameter_count(teacher.model)
cols = st.columns(4)
cols[0].metric("Student parameters", f"{student_params:,}", f"{student_params / teacher_params:.0%} of the teacher's",
               delta_color="off", delta_arrow="off", help=f"The teacher ({name}) has {teacher_params:,}.")
cols[1].metric("Teacher parameters", f"{teacher_params:,}")
cols[2].metric("Teacher accuracy", f"{baseline.accuracy:.1%}")
cols[3].metric("Teacher file", format_bytes(baseline.compressed_bytes))

result = students.trained(name, settings)
if result is None:
    estimate = students.estimated_seconds(name, settings)
    stopped = st.session_state.get(students.STOPPED) == key
    about = f" (about {estimate:.1f} s on this server)" if estimate is not None else ""
    clicked = st.button(f"Train students{about}", key="distill_train", type="primary", icon=":material/school:",
                        help="Distil the student from the teacher, then train the same student on labels alone.")
    if clicked or (not stopped and (estimate is None or estimate <= AUTO_TRAIN_S)):
        panel = st.empty()  # the live view, cleared if the core refuses the settings
        with panel.container():
            st.button("Stop", key="distill_stop", on_click=students.stop, args=(key,), icon=":material/stop:",
                      help="Stop training; the curves so far stay.")
            bar = st.progress(0.0, text="Training the KD student")
            live = st.columns(2)
            slots = [live[0].empty(), live[1].empty()]
        drawn = {"at": 0.0, "count": 0}

        def show(kd, scratch, fraction) -> None:
            """After every epoch: move the bar; redraw the curves now and then (the finished run is drawn after)."""
            bar.progress(min(fraction, 1.0), text="Training the KD student" if fraction < 0.5 else
                         "Training the scratch student (the same student, labels only)")
            if time.perf_counter() - drawn["at"] >= LIVE_REFRESH_S and fraction < 1.0:
                drawn["at"], drawn["count"] = time.perf_counter(), drawn["count"] + 1
                slots[0].plotly_chart(accuracy_curves(kd, scratch, baseline.accuracy, settings.epochs), width="stretch",
                                      key=f"distill_live_acc_{drawn['count']}")
                slots[1].plotly_chart(loss_curves(kd, scratch, settings.epochs), width="stretch",
                                      key=f"distill_live_loss_{drawn['count']}")

        with user_errors():
            try:
                students.train(name, settings, show)
            except ValueError:
                panel.empty()
                raise
        st.rerun()  # draw the finished students from the cache
    run = students.partial(key)
    if stopped and run:
        kd_done, scratch_done = (f"{round(h[-1]['epoch'], 1):g}" if h else "0" for h in (run["kd"], run["scratch"]))
        st.warning(f"Stopped: the KD student trained {kd_done} of {settings.epochs} epochs, the scratch student "
                   f"{scratch_done}. The curves so far are below; **Train students** starts again.", icon="⏹️")
        curves = st.columns(2)
        curves[0].plotly_chart(accuracy_curves(run["kd"], run["scratch"], baseline.accuracy, settings.epochs),
                               width="stretch", key="distill_acc_chart")
        curves[1].plotly_chart(loss_curves(run["kd"], run["scratch"], settings.epochs), width="stretch",
                               key="distill_loss_chart")
    else:
        st.info("Training takes a moment for these settings: press **Train students**.", icon="🎓")
    st.stop()

kd_label = f"KD student w={settings.width:g} (T={settings.temperature:g}, α={settings.alpha:g}, {settings.epochs} epochs)"
scratch_label = f"scratch student w={settings.width:g} ({settings.epochs} epochs)"
points.record(name, students.point_json(name, settings, "distill"), result.kd_report, page="Distillation", label=kd_label)
points.record(name, students.point_json(name, settings, "scratch"), result.scratch_report, page="Distillation",
              label=scratch_label)

gain = (result.kd_report.accuracy - result.scratch_report.accuracy) * 100
if abs(gain) < 0.05:
    verdict = "KD and scratch training end level"
else:
    verdict = f"KD {'beats' if gain > 0 else 'trails'} scratch training by {abs(gain):.1f} points"
st.markdown(
    f"**{verdict}** after {settings.epochs} epochs, with a student of {student_params / teacher_params:.0%} of the "
    f"teacher's parameters "
    f"(both trained in {result.seconds:.1f} s on this server, cached for everyone)."
)
curves = st.columns(2)
curves[0].plotly_chart(accuracy_curves(result.kd_history, result.scratch_history, baseline.accuracy, settings.epochs),
                       width="stretch", key="distill_acc_chart")
curves[1].plotly_chart(loss_curves(result.kd_history, result.scratch_history, settings.epochs), width="stretch",
                       key="distill_loss_chart")

st.subheader("KD student vs the teacher")
metric_row(result.kd_report)
st.subheader("Scratch student vs the teacher")
metric_row(result.scratch_report)
latency_caption(result.kd_report)
report = result.kd_report
st.info(
    f"The student is a smaller dense network, so unlike zeroed or quantized weights it really computes less: "
    f"{report.baseline_macs:,} → {report.macs:,} MACs per example"
    + (f", measured {report.speedup:.2f}× faster than the teacher here." if report.speedup else "."),
    icon="💡",
)
st.caption("Both students are points on the **Trade-offs** page. Training is seeded: the same settings always give "
           "the same students.")
