"""Distillation: train a small student to imitate the model, and compare it with the same student trained alone."""
import streamlit as st

import compressor as cz
from compressor.distillation import parameter_count
from compressor.figures.distillation import (
    accuracy_curves, loss_curves, soft_targets, soft_targets_info, telling_example,
)
from ui import cache, points, training
from ui import distillation_cache as students
from ui.display import format_bytes, latency_caption, metric_row, user_errors
from ui.session import display_name, in_range, model_picker, one_of, persistent, widget_label

WIDTHS = [round(0.05 * i, 2) for i in range(1, 21)]  # width multiplier stops: 5%, 10%, ..., 100%
DEFAULT_WIDTH = {"digits-mlp": 0.4, "digits-cnn": 0.5}  # about a quarter of the teacher's parameters each
TEMPERATURES = [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0]
ALPHAS = [round(0.05 * i, 2) for i in range(21)]
BATCH_SIZES = [16, 32, 64, 128, 256]
AUTO_TRAIN_S = 2.0  # train without a click when earlier runs on this server say it takes at most this long

st.set_page_config(page_title="Distillation · Compression Lab", page_icon="🎓", layout="wide")
name = model_picker()
if cache.is_embedding(name):  # students here are classifiers trained on logits; an encoder needs its own student
    st.title("🎓 Distillation")
    st.info(f"{display_name(name)} is a sentence encoder: this page's students learn a classifier's softened logits, so it has "
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
            "Student width", WIDTHS, key=persistent(f"distill_width_{widget_label(name)}", DEFAULT_WIDTH.get(name, 0.5), one_of(WIDTHS)),
            format_func=lambda w: f"{w:.0%}",
            help="Every hidden size (neurons, channels) of the teacher's architecture times this; parameters "
                 "shrink roughly as width².",
        )
        temperature = st.select_slider("Temperature T", TEMPERATURES,
                                       key=persistent("distill_T", defaults.temperature, one_of(TEMPERATURES)),
                                       format_func=lambda t: f"{t:g}",
                                       help="Softens the teacher's probabilities: softmax(z / T).")
        alpha = st.select_slider("α (weight of the teacher's soft targets)", ALPHAS,
                                 key=persistent("distill_alpha", defaults.alpha, one_of(ALPHAS)),
                                 help="1 − α goes to the hard labels. α = 0 is scratch training.")
        epochs = st.slider("Epochs (both students)", 1, 100, key=persistent("distill_epochs", defaults.epochs,
                                                                            in_range(1, 100)))
        with st.expander("Optimizer"):
            lr = st.number_input("Learning rate", 0.0, 1.0, step=1e-3, format="%.4f",
                                 key=persistent("distill_lr", defaults.lr, in_range(0.0, 1.0)),
                                 help="Adam step size, the same for both students.")
            batch_size = st.select_slider("Batch size", BATCH_SIZES,
                                          key=persistent("distill_batch", defaults.batch_size, one_of(BATCH_SIZES)))
            seed = st.number_input("Seed", 0, 10_000, key=persistent("distill_seed", defaults.seed, in_range(0, 10_000)),
                                   help="Initialises the student (the same one for KD and scratch) and orders batches.")
    return students.Settings(width, temperature, alpha, epochs, lr, batch_size, int(seed))


settings = controls()
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
               delta_color="off", delta_arrow="off", help=f"The teacher ({display_name(name)}) has {teacher_params:,}.")
cols[1].metric("Teacher parameters", f"{teacher_params:,}")
cols[2].metric("Teacher accuracy", f"{baseline.accuracy:.1%}")
cols[3].metric("Teacher file", format_bytes(baseline.compressed_bytes))

jobs = students.jobs(name, settings)
with user_errors():
    students.check(name, settings)
train_slot = st.empty()  # the Train button, while the students are not trained
if len(training.stored(jobs)) < len(jobs) and not training.has_stopped("distill", name, jobs):
    estimate = students.estimated_seconds(name, settings)
    about = f" (about {estimate:.1f} s on this server)" if estimate is not None else ""
    clicked = train_slot.button(f"Train students{about}", key="distill_train", type="primary", icon=":material/school:",
                                help="Distil the student from the teacher, then train the same student on labels alone.")
    if not clicked and estimate is not None and estimate > AUTO_TRAIN_S:
        st.info("Training takes a moment for these settings: press **Train students**.", icon="🎓")
        st.stop()

status = st.empty()  # the progress bar and the Stop button, while a student trains
curves = st.columns(2)
outcomes = training.train_live(
    name, jobs, "distill", status, curves[0].empty(),
    lambda h: accuracy_curves(h.get(students.KD, []), h.get(students.SCRATCH, []), baseline.accuracy, settings.epochs),
)
students.record_speed(name, settings, outcomes)
if len(outcomes) == len(jobs) and not any(o.stopped for o in outcomes.values()):
    train_slot.empty()
histories = {label: outcome.history for label, outcome in outcomes.items()}
curves[1].plotly_chart(loss_curves(histories.get(students.KD, []), histories.get(students.SCRATCH, []), settings.epochs),
                       width="stretch", key="distill_loss_chart")
training.stopped_notice("distill", outcomes, jobs)
reports = {label: training.outcome_report(outcome) for label, outcome in outcomes.items()}
labels = {students.KD: f"KD student w={settings.width:g} (T={settings.temperature:g}, α={settings.alpha:g}, "
                       f"{settings.epochs} epochs)",
          students.SCRATCH: f"scratch student w={settings.width:g} ({settings.epochs} epochs)"}
for label, outcome in outcomes.items():
    if not outcome.stopped:
        points.record(name, outcome.key, reports[label], page="Distillation", label=labels[label])

if len(reports) == 2:
    gain = (reports[students.KD].accuracy - reports[students.SCRATCH].accuracy) * 100
    verdict = ("KD and scratch training end level" if abs(gain) < 0.05 else
               f"KD {'beats' if gain > 0 else 'trails'} scratch training by {abs(gain):.1f} points")
    stopped = any(o.stopped for o in outcomes.values())
    seconds = sum(o.seconds for o in outcomes.values())
    st.markdown(
        f"**{verdict}** after {'the epochs trained' if stopped else f'{settings.epochs} epochs'}, with a student of "
        f"{student_params / teacher_params:.0%} of the teacher's parameters (both trained in {seconds:.1f} s on this "
        f"server{'' if stopped else ', cached for everyone'})."
    )
for label, heading in ((students.KD, "KD student vs the teacher"), (students.SCRATCH, "Scratch student vs the teacher")):
    if label in reports:
        stopped = outcomes[label].stopped
        st.subheader(heading + (" (stopped early)" if stopped else ""))
        metric_row(reports[label])
if students.KD in reports and not outcomes[students.KD].stopped:
    report = reports[students.KD]
    latency_caption(report)
    st.info(
        f"The student is a smaller dense network, so unlike zeroed or quantized weights it really computes less: "
        f"{report.baseline_macs:,} → {report.macs:,} MACs per example"
        + (f", measured {report.speedup:.2f}× faster than the teacher here." if report.speedup else "."),
        icon="💡",
    )
st.caption("Finished students are points on the **Trade-offs** page. Training is seeded: the same settings always give "
           "the same students.")
