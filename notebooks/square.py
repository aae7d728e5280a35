# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # LeapFactual on the square toy
#
# The diffeomorphic counterfactuals of the previous chapter climb the gradient of a classifier.
# LeapFactual (Cao et al.) needs no gradient at all: a conditional flow-matching model learns to move
# between a *flattened* latent space, where class and style are entangled, and a *structured* one,
# where the class has been taken out. Going up (a *lift*) under the current label removes the class,
# coming down (a *land*) under the target label puts the target class in. How much of each is done
# is set by two step sizes, which gives *replacement*, *blending* and *injection* of class information.
#
# This chapter rebuilds the paper's toy (Sec. 3.2.2, Fig. 4, Algorithms 1 and 2) on a square cut into
# four classes, where everything can be seen and measured: which class information a lift removes,
# which part of a point a leap keeps, and how far blending and injection move it.
#
# What the chapter introduces into `latentcf`:
# `cfm.ConditionalVelocityMLP` and `cfm.cfm_loss` (the CE-CFM objective, Eq. 3),
# `leap.lift`, `leap.land`, `leap.leap` (Algorithm 1), `leap.leapfactual` (Algorithm 2), `leap.Solver`,
# and `square` (the toy's data, its exactly solvable reference field and its metrics).

# %% tags=["remove-cell"]
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("latentcf") is None:  # on Colab: install the book's library
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "latentcf[notebook] @ git+https://github.com/latentcf/latentcf-book@v0.1.0#subdirectory=lib"],
                   check=True)

# %% tags=["parameters"]
SCALE = "smoke"
SEED = 0
DEVICE = "auto"

# %% [markdown]
# `start_run` seeds everything, picks the device and loads the settings of the scale:
# `square.PAPER`, the official 30,000 training iterations of batch 256, at `"paper"`, and `square.SMOKE`,
# 5,000 of batch 1,024, at `"smoke"`.
# Everything else (the solver, the step sizes, the number of leaps) is the same at both scales.
# As in every chapter, each field starts with its stage: `flow_` for the CE-CFM field, `leap_` for the
# solver and the leaps of Algorithm 2, `eval_` and `bench_` for the measurements.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown

from latentcf.book import prose
from latentcf.chapters import square
from latentcf.chapters.registry import start_run
from latentcf.core import claims, plotting
from latentcf.core.settings import settings_table
from latentcf.methods.leap import land, leap_paths

run = start_run("square", SCALE, SEED, DEVICE)
settings, device = run.settings, run.device
data = square.load_data(settings, device)
if device.type == "cpu":
    torch.set_num_threads(1)  # 64-wide layers: one CPU thread is faster than several
plotting.use_style()
COLORS = np.array(plotting.QUADRANT_COLORS)
BOXES = [(cx - 0.25, cy - 0.25, cx + 0.25, cy + 0.25) for cx, cy in square.CENTRES.tolist()]
settings_table(square.SMOKE, square.PAPER)

# %% [markdown]
# ## The data: a square in four classes
#
# The latent space is the plane itself (the generative model $g_\phi$ is the identity). A point is
#
# $$ z = c_p + r_p, \qquad c_p \in \{\pm 0.25\}^2, \quad r_p \in (-0.25, 0.25)^2, $$
#
# a *centre* $c_p$, which is the class, plus a *relative position* $r_p$, the residual that a
# counterfactual should keep. The class is the quadrant: 0 is $(-,-)$ blue, 1 is $(-,+)$ orange,
# 2 is $(+,-)$ green, 3 is $(+,+)$ red. The same rule, `square.quadrant_label`, is the classifier
# $f_\theta$: it has no gradient, which LeapFactual never asks for.
# The flow starts from a *source* distribution that is uniform on the same square, as in the official
# code (`Toy_Experiment/Experiment_Square.ipynb` in
# [caicairay/LeapFactual](https://github.com/caicairay/LeapFactual); the paper describes a Gaussian in general).
# `square.load_data` returns both distributions, and training draws a fresh batch from them at every step.

# %%
z_data, labels_data = data.sample(2000, run.generator)
z_source = data.sample_source(2000, run.generator)
figure, axes = plt.subplots(1, 2, figsize=(7.2, 3.6), sharey=True)
axes[0].scatter(*z_source.T, s=2, color="black")
axes[1].scatter(*z_data.T, s=2, c=COLORS[labels_data])
plotting.class_regions(axes[1], BOXES, COLORS)
for ax, title in zip(axes, ["source $q(z_0)$, t = 0", "data $q(z_1 | c)$, t = 1"]):
    ax.set(title=title, xlabel="x", aspect="equal", xlim=(-0.5, 0.5), ylim=(-0.5, 0.5))
axes[0].set_ylabel("y");

# %% [markdown]
# ## Training the field with CE-CFM (Eq. 3)
#
# Flow matching regresses a velocity field onto the straight path between a source sample $z_0$ and a
# data sample $z_1$ (I-CFM, Eq. 2, with $\sigma = 0$):
#
# $$ z_t = t\, z_1 + (1 - t)\, z_0, \qquad u_t(z \mid z_0, z_1) = z_1 - z_0 . $$
#
# LeapFactual draws $z_1$ from one class and gives the network that class as a condition, the
# CE-CFM objective
#
# $$ \mathcal{L}_{\text{CE-CFM}}(\psi) = \mathbb{E}_{t, z_0, (z_1, c)}
#    \big\lVert v_\psi(t, z_t, c) - (z_1 - z_0) \big\rVert^2 . $$
#
# One network thus holds four flows, one per class, each carrying the whole source square onto one
# quadrant. The network is the official one (three hidden layers of 64 SELU units on $[z, t, c]$,
# here with a one-hot $c$), trained with Adam at lr $10^{-3}$ on a fresh batch at every step.

# %% [markdown]
# This is the library's own code that computed the loss of every training step below, `cfm_loss` from
# `latentcf/methods/cfm.py`:
#
# ```{literalinclude} ../lib/latentcf/methods/cfm.py
# :language: python
# :pyobject: cfm_loss
# ```

# %%
with run.stage("flow"):
    velocity, train_info = square.train_velocity(data, settings, SEED, device)
final_loss = float(np.mean(train_info["loss"][-500:]))
run.record(cfm_final_loss=final_loss)
plotting.loss_curves({"CE-CFM loss": train_info["loss"]});

# %% [markdown]
# The loss does not go to zero: many pairs $(z_0, z_1)$ cross the same $(t, z_t)$ with different
# targets $z_1 - z_0$, and the network can only learn their mean. The official notebook prints
# about 0.06 to 0.07; `cfm_final_loss` is the mean over the last 500 steps here.
# Does each class flow reach its quadrant? Land fresh source points under each label.

# %%
z0 = data.sample_source(settings.eval_n, run.generator).to(device)
labels_generate = torch.randint(0, 4, (settings.eval_n,), generator=run.generator).to(device)
generated = land(velocity, z0, labels_generate, 1.0, square.solver(settings))[-1]
run.record(generation_hit_rate=square.replace_hit_rate(generated, labels_generate))
run.metrics["generation_hit_rate"]

# %% [markdown]
# `generation_hit_rate` is the fraction of points landed under label $c$ that end in the square of $c$.
#
# ## Lift and land: Figure 4 (a)
#
# A trained field gives two transports between the data end ($t = 1$) and the source end ($t = 0$):
#
# $$ \text{lift: } z(0) = z + \int_1^0 \gamma_{\text{lift}}\, v_\psi(\tau, z(\tau), y_c)\, d\tau, \qquad
#    \text{land: } z(1) = z(0) + \int_0^1 \gamma_{\text{land}}\, v_\psi(\tau, z(\tau), \hat y)\, d\tau . $$
#
# Following the official notebook, 512 source points are integrated forwards under label 0 (blue) and
# under label 3 (red), with dopri5 ($\text{rtol} = \text{atol} = 10^{-4}$) stopping on 100 time points.
# Read downwards, the blue paths are the lift of the blue points: every blue point goes to its own
# black point, and the red paths carry the *same* black points to the red square.
# Time is the vertical axis.

# %%
path_solver = square.solver(settings, n_steps=settings.leap_path_steps)
z0_panel = data.sample_source(512, run.generator).to(device)
forward = {label: land(velocity, z0_panel, torch.full((512,), label), 1.0, path_solver) for label in (0, 3)}
blue_paths, red_paths = (square.with_time(forward[label], 0, 1) for label in (0, 3))
figure = plt.figure(figsize=(5.5, 5.0))
ax = figure.add_subplot(projection="3d")
plotting.class_regions(ax, BOXES, COLORS, height=1.0)
plotting.class_regions(ax, [(-0.5, -0.5, 0.5, 0.5)], ["black"], height=0.0)
plotting.leap_panel3d(ax, blue_paths.flip(0)[:, :128], red_paths[:, :128], [COLORS[0]] * 128, COLORS[3],
                      "(a) blue lifted to t = 0, landed as red");

# %% [markdown]
# The same in 3-D that you can turn: twelve random points lifted under their own class (paths in the
# colour of that class, from the black start points at $t = 1$ down to $t = 0$) and landed under the red
# label (red paths back up to $t = 1$). Under the exact field a point of any class lifts to $2 r_p$ (see below).

# %%
z_few, labels_few = data.sample(12, run.generator)
few_paths = square.replacement(velocity, z_few.to(device), torch.full((12,), 3), path_solver)
lift_xyt, land_xyt = square.with_time(few_paths.lift, 1, 0), square.with_time(few_paths.land, 0, 1)
traces = [plotting.line3d(lift_xyt[:, i], f"lift, class {labels_few[i].item()}", COLORS[labels_few[i]],
                          width=3, show_legend=False, group="lift") for i in range(12)]
traces += [plotting.line3d(land_xyt[:, i], "land as red", COLORS[3], width=3, show_legend=i == 0,
                           group="land") for i in range(12)]
traces.append(plotting.scatter3d(lift_xyt[0], "start (t = 1)", "black", size=4, opacity=1.0))
plotting.figure3d(traces, "LEAP in (x, y, t): lift under the own class, land under red")

# %% [markdown]
# ## Replacement: Figure 4 (b)
#
# One LEAP (Algorithm 1) with $\gamma_{\text{lift}} = \gamma_{\text{land}} = 1$ lifts all the way to
# $t = 0$ and lands all the way back. The paper's four start points share the residual
# $r_p = (-0.10, 0.05)$ and differ in the centre; the target is red.
# Theorem 1 says the lift under the own class removes exactly the class information, so the four
# lifted points should coincide and land on the same red point: the residual is kept, the class is
# *replaced*.

# %%
start = square.CENTRES + torch.tensor([-0.10, 0.05])
target_red = torch.full((4,), 3)
panels = {"(b) replacement, $\\gamma$ = 1 / 1": (1.0, 1.0), "(c) blending, $\\gamma$ = 0.3 / 0.3": (0.3, 0.3),
          "(d) injection, $\\gamma$ = 0 / 1": (0.0, 1.0)}
panel_paths = {title: leap_paths(velocity, start.to(device), square.quadrant_label(start), target_red,
                                        gamma_lift, gamma_land, path_solver)
               for title, (gamma_lift, gamma_land) in panels.items()}
figure = plt.figure(figsize=(12.0, 4.2))
for i, (title, paths) in enumerate(panel_paths.items(), start=1):
    ax = figure.add_subplot(1, 3, i, projection="3d")
    plotting.class_regions(ax, BOXES, COLORS, height=1.0)
    plotting.leap_panel3d(ax, square.with_time(paths.lift, 1, 0), square.with_time(paths.land, 0, 1),
                          COLORS[:4], COLORS[3], title)
figure.tight_layout()

# %% [markdown]
# Now the numbers, on `settings.eval_n` points from all four classes, each sent to a random *other*
# class:
#
# * `replace_hit_rate`: the fraction that lands in the target square;
# * `residual_error`: the mean of $\lVert r_p(\text{landed}) - r_p(\text{source}) \rVert$, with the landed
#   residual measured from the target centre (the side of a class square is 0.5);
# * `replace_collapse`: every residual is put in all four squares and lifted under its label; the
#   mean distance between the four lifted points, divided by the mean distance between the four
#   sources. 0 means the lift has forgotten the class completely.

# %%
solver = square.solver(settings)
z_eval, labels_eval = data.sample(settings.eval_n, run.generator)
target_eval = square.other_labels(labels_eval, run.generator)
z_eval, target_eval = z_eval.to(device), target_eval.to(device)
with run.stage("leap_replace"):
    replaced = square.replacement(velocity, z_eval, target_eval, solver).land[-1]
    sources, lifted = square.lift_every_class(velocity, square.residual(z_eval), solver)
missed = square.quadrant_label(replaced) != target_eval
run.record(replace_hit_rate=square.replace_hit_rate(replaced, target_eval),
           residual_error=square.residual_error(z_eval, replaced, target_eval),
           replace_collapse=square.replace_collapse(sources, lifted),
           miss_max_edge_distance=square.edge_distance(z_eval)[missed].max() if missed.any() else 0.0)
pd.Series({name: run.metrics[name] for name in ("replace_hit_rate", "residual_error", "replace_collapse",
                                                "miss_max_edge_distance")})

# %% [markdown]
# A perfect CE-CFM field would score 1, 0 and 0. The class flows here are exactly solvable:
# carrying the uniform source square onto a uniform quadrant, coordinate by coordinate, maps
# $z_0 \mapsto c + z_0 / 2$, so the lift sends $c_s + r$ to $2r$ whatever the class and the land
# sends $2r$ to $c_t + r$. Where the learned field misses, look at how close to an edge of their square
# the missed points start (`miss_max_edge_distance`, the largest distance to the nearest edge among them;
# a point at the centre of its square is 0.25 from every edge): near an edge the uniform densities jump,
# the field has to turn sharply close to $t = 1$, and a small network trained on noisy targets smooths the corner.
#
# ## Blending: Figure 4 (c) and $\alpha(\gamma)$
#
# With $\gamma_{\text{lift}} = \gamma_{\text{land}} = \gamma < 1$ the lift goes only part of the way and
# the land brings back only part of the target, so the result mixes the two centres (Sec. 3.2.2):
#
# $$ z = \alpha\, c_s + (1 - \alpha)\, c_t + r . $$
#
# `square.blend_alpha` fits $\alpha$ by least squares with $r$ taken as the *source* residual:
# $\alpha = \sum \langle z - r - c_t, c_s - c_t \rangle / \sum \lVert c_s - c_t \rVert^2$ over all points.
# As a reference, the straight-line field $v(t, z, c) = (2c - z)/(2 - t)$, which carries the source
# square onto quadrant $c$ along straight lines, can be solved by hand: $z - 2c$ scales by
# $(2 - t)^\gamma$, which gives $\alpha = 2^{1 - \gamma} - 1$ (`square.StraightLineField`).
# The learned field is the I-CFM field, whose paths are curved, so nothing forces it onto that curve;
# the figure shows how close it comes (a larger $\alpha$ is a little less blending per leap).

# %%
with run.stage("leap_blend"):
    blended = {gamma: square.blend(velocity, z_eval, target_eval, gamma, solver) for gamma in square.BLEND_GAMMAS}
alphas = {gamma: square.blend_alpha(z_eval, z_blend, target_eval) for gamma, z_blend in blended.items()}
run.record(**{square.blend_metric_name(gamma): alpha for gamma, alpha in alphas.items()})
gamma_grid = np.linspace(0, 1, 50)
figure, ax = plt.subplots(figsize=(4.4, 3.4))
ax.plot(gamma_grid, [square.straight_line_alpha(g) for g in gamma_grid], color="black", lw=1,
        label="straight-line field: $2^{1-\\gamma} - 1$")
ax.plot(list(alphas), list(alphas.values()), "o", color=plotting.ACCENT, label="learned CE-CFM field")
ax.set(xlabel="$\\gamma_{lift} = \\gamma_{land} = \\gamma$", ylabel="fitted $\\alpha$",
       title="one blending leap")
ax.legend();

# %%
inside = all(0 < alpha < 1 for alpha in alphas.values())
falling = claims.fall(list(alphas.values())) > 0
above_reference = sum(alpha > square.straight_line_alpha(gamma) for gamma, alpha in alphas.items())
Markdown("In this run " + ("every $\\alpha$ lies strictly between 0 and 1" if inside
                           else "some $\\alpha$ lies outside the interval (0, 1)")
         + (" and $\\alpha$ falls as $\\gamma$ grows" if falling
            else ", and $\\alpha$ does not fall at every step of $\\gamma$")
         + f"; the learned $\\alpha$ is above the straight-line field's at {above_reference} of the "
         f"{len(alphas)} step sizes.")

# %% [markdown]
# Where every $\alpha$ lies strictly between 0 and 1 and falls as $\gamma$ grows, one blending leap moves a
# point a fraction $1 - \alpha$ of the way from its centre to the target centre and keeps its residual.
# $\gamma = 1$ is replacement ($\alpha = 0$).
#
# ## Injection: Figure 4 (d)
#
# Blending a point that is already of the target class does nothing: lift and land use the same label
# and the same $\gamma$ and cancel. To push *more* target information into it, LeapFactual lifts less
# than it lands, $\gamma_{\text{lift}} < \gamma_{\text{land}}$. In panel (d) above the red point is lifted
# not at all and landed with $\gamma = 1$; under the straight-line field it moves to
# $z = (1 + \alpha) c_t + (1 - \alpha) r$: further out into the red square, with a shrunk residual, so it
# stays inside the data.
# `inject_gain` measures this on `settings.eval_n` points of the target class after the injection
# leaps of panel (e) ($\gamma_{\text{lift}} = 0$, $\gamma_{\text{land}} = 0.1$, three leaps): the mean
# displacement along the class direction $c_t / \lVert c_t \rVert$.
# The straight-line field gives a gain of $(1 - 2^{-0.3}) \lVert c_t \rVert \approx 0.066$.

# %%
z_target_class = square.centres(target_eval, like=z_eval) + square.residual(z_eval)
with run.stage("leap_inject"):
    injected = square.progressive(velocity, z_target_class, target_eval, 0, settings.leap_gamma_blend,
                                  settings.leap_n_inject, settings.leap_gamma_inject_lift,
                                  settings.leap_gamma_inject_land, solver)
run.record(inject_gain=square.inject_gain(z_target_class, injected.z_cf, target_eval),
           inject_hit_rate=square.replace_hit_rate(injected.z_cf, target_eval))
pd.Series({name: run.metrics[name] for name in ("inject_gain", "inject_hit_rate")})

# %% [markdown]
# `inject_hit_rate` is the share of the injected points that are still in the target square: where it is 1,
# injection moves them outwards *within* the class and throws none out of the data.
#
# ## Blending stops by itself
#
# "When blending only, the algorithm will automatically stop as soon as the target class is reached"
# (Sec. 3.2.2). The `settings.eval_n` points of the other classes, each sent to its random target, are
# blended leap after leap ($\gamma = 0.1$, `settings.eval_settle_leaps` leaps, the classifier asked before
# each). A point *settles* when the classifier first agrees with the target after some leap and every
# later leap keeps it in the target square and moves it less than `square.REST_STEP` (0.001; the first
# leap moves a point about 0.06). `blend_settle_rate` is the fraction that settles,
# `blend_arrival_leaps_median` the median number of leaps until arrival, `blend_rest_step_max` the
# largest step of an arrived point after its arrival.
#
# Once the label is the target, lift and land use the same label and cancel whatever the field, so
# resting alone proves nothing; the arrival is what a wrong field breaks. A field that ignores the class
# never moves a point, and one that lands in the wrong quadrant drives most points past the target
# (`tests/test_square.py` shows both failing). One leap closes a fraction $1 - \alpha(0.1)$ of the
# remaining distance, so a point whose residual puts it far from the target square needs many leaps.

# %%
with run.stage("leap_settle"):
    settling = square.progressive(velocity, z_eval, target_eval, settings.eval_settle_leaps,
                                  settings.leap_gamma_blend, 0, 0.0, 0.0, solver)
settled = square.blend_settle(settling.z_trajectory, target_eval)
run.record(blend_settle_rate=settled.settle_rate, blend_arrival_leaps_median=settled.arrival_leaps_median,
           blend_rest_step_max=settled.rest_step_max)
pd.Series({name: run.metrics[name] for name in ("blend_settle_rate", "blend_arrival_leaps_median",
                                                "blend_rest_step_max")})

# %% [markdown]
# Where points do not settle (`blend_settle_rate` below 1), look for them on the border of the target square:
# the learned field can land them there (where the uniform densities jump, as for the misses of replacement),
# a numerically tiny move then flips the quadrant rule's label, and blending towards the target resumes for a
# leap. `blend_rest_step_max` is then a whole blending step rather than a solver error.
#
# ## LeapFactual (Algorithm 2): Figure 4 (e)
#
# Algorithm 2 chains the leaps and asks the classifier for the current label $y_c$ before each of them:
# $N_b = 8$ blending leaps with $\gamma_b = 0.1$, then $N_i = 3$ injection leaps with
# $\gamma_{i,\text{lift}} = 0$, $\gamma_{i,\text{land}} = 0.1$, from the four start points towards red.
# The classifier is the quadrant rule, called on the decoded point and never differentiated.
# As in the official code, no point is frozen: a point that has reached red stops by itself.

# %% [markdown]
# This is the library's own code that ran every chain of leaps in this chapter (`square.progressive` calls
# it with the quadrant rule as $f_\theta$ and the identity as $g_\phi$), `leapfactual` from
# `latentcf/methods/leap.py`:
#
# ```{literalinclude} ../lib/latentcf/methods/leap.py
# :language: python
# :pyobject: leapfactual
# ```

# %% [markdown]
# The figure follows Fig. 4 (e).
# Markers: x after each blending leap, a large dot for the last blended point, + after each injection
# leap, a triangle for the end. Dashed: the straight blending line to the red start point;
# dotted: the injection direction to the corner $(0.5, 0.5)$.

# %%
chain = square.progressive(velocity, start.to(device), target_red, settings.leap_n_blend,
                           settings.leap_gamma_blend, settings.leap_n_inject, settings.leap_gamma_inject_lift,
                           settings.leap_gamma_inject_land, solver)
trajectory = chain.z_trajectory.cpu().numpy()
blended_end, final = trajectory[settings.leap_n_blend], trajectory[-1]
figure, ax = plt.subplots(figsize=(5.0, 5.0))
plotting.class_regions(ax, BOXES, COLORS)
for i, color in enumerate(COLORS):
    ax.plot(*np.stack([trajectory[0, i], trajectory[0, 3]]).T, "--", color=color, lw=0.8)
    ax.plot(*np.stack([blended_end[i], [0.5, 0.5]]).T, ":", color=color, lw=0.8)
    ax.plot(*trajectory[: settings.leap_n_blend + 1, i].T, "-", color=color, lw=0.6, alpha=0.5)
    ax.scatter(*trajectory[1: settings.leap_n_blend, i].T, marker="x", color=color, s=20)
    ax.scatter(*trajectory[settings.leap_n_blend + 1: -1, i].T, marker="+", color=color, s=30)
ax.scatter(*trajectory[0].T, facecolors="none", edgecolors=COLORS, s=60, label="start")
ax.scatter(*blended_end.T, color=COLORS, s=70, label="blended (CE)")
ax.scatter(*final.T, color=COLORS, marker="^", s=70, edgecolors="black", label="injected (reliable CE)")
ax.set(xlim=(-0.5, 0.5), ylim=(-0.5, 0.5), aspect="equal", xlabel="x", ylabel="y",
       title="(e) 8 blending leaps, then 3 injection leaps")
ax.legend(loc="lower right", fontsize=8);

# %%
pd.DataFrame(chain.label_trajectory.cpu().numpy().T, index=["blue", "orange", "green", "red"],
             columns=[f"leap {j}" for j in range(chain.label_trajectory.shape[0])])

# %% [markdown]
# The table is the classifier's label after each leap. A point can change its current label $y_c$ on the
# way (the blue one can pass through orange or green, because the mixed centre moves along the diagonal
# and the residual decides which boundary it crosses first); from then on it only needs to move in the
# remaining coordinate. The red point starts in the target class, so its lift and land cancel and blending
# leaves it in place up to the solver's error; where the field has learned the class direction, injection
# then moves each point towards the outer corner (dotted).
# On `settings.eval_n` random points with random other targets, the same schedule reaches the target
# this often after blending and after injection:

# %%
with run.stage("leap_leapfactual"):
    counterfactuals = square.progressive(velocity, z_eval, target_eval, settings.leap_n_blend,
                                         settings.leap_gamma_blend, settings.leap_n_inject,
                                         settings.leap_gamma_inject_lift, settings.leap_gamma_inject_land, solver)
reached = counterfactuals.label_trajectory.cpu() == target_eval.cpu()
run.record(leapfactual_blend_hit_rate=reached[settings.leap_n_blend].float().mean(),
           leapfactual_hit_rate=reached[-1].float().mean())
pd.Series({name: run.metrics[name] for name in ("leapfactual_blend_hit_rate", "leapfactual_hit_rate")})

# %% [markdown]
# Eight blending leaps of $\gamma = 0.1$ move a point only part of the way (roughly $\alpha(0.1)^8$ of
# the centre distance is left; roughly, because the current label changes on the way), so points whose
# residual keeps them far from the target square can still be outside it after blending
# (`leapfactual_blend_hit_rate`); the paper suggests small steps and many of them.
# Injection keeps pushing towards the target; `leapfactual_hit_rate` is the share it has brought in at the end.
#
# ## Speed: how fast is a LEAP?
#
# Every leap is two ODE solves over the whole batch. The official code uses the adaptive dopri5; a
# fixed-grid Runge-Kutta 4 with `settings.bench_rk4_steps` steps per transport is the cheap alternative.
# Throughput in leaps per second for one replacement leap of `settings.bench_n` points, and the
# largest distance between the two solvers' results:

# %%
z_bench, _ = data.sample(settings.bench_n, run.generator)
target_bench = torch.full((settings.bench_n,), 3)
with run.stage("bench"):
    rate_dopri5, landed_dopri5 = square.leap_throughput(velocity, z_bench.to(device), target_bench, solver)
    rate_rk4, landed_rk4 = square.leap_throughput(velocity, z_bench.to(device), target_bench,
                                                  square.solver(settings, "rk4", settings.bench_rk4_steps))
run.record(leaps_per_s_dopri5=rate_dopri5, leaps_per_s_rk4=rate_rk4,
           rk4_dopri5_max_gap=(landed_rk4 - landed_dopri5).norm(dim=1).max())
pd.DataFrame({"solver": ["dopri5 (adaptive)", f"rk4 ({settings.bench_rk4_steps} steps)"],
              "leaps per second": [rate_dopri5, rate_rk4]}).round(1)

# %%
solver_gap = run.metrics["rk4_dopri5_max_gap"]
Markdown(f"In this run the two solvers land every point within {prose.number(solver_gap)} of each other "
         f"(`rk4_dopri5_max_gap`), {prose.ordered(solver_gap, 0.05, 'more than', 'less than', 'exactly')} a "
         f"tenth of the side of a class square, and the fixed grid makes {prose.number(rate_rk4 / rate_dopri5, 2)} "
         f"times as many leaps per second as dopri5: the "
         + ("fixed-grid solver is faster." if rate_rk4 > rate_dopri5 else "fixed-grid solver is not faster here."))

# %% [markdown]
# Where the gap is a small fraction of a class square and the fixed grid is faster, a short fixed grid is
# enough on this smooth field.
#
# ## Timings and the recorded results
#
# Times on this run's device, recorded by `run.stage` as `seconds_<stage>`. The field comes from the cache
# when the same settings were trained before, and then `flow` is the time it took to load it.

# %%
pd.DataFrame({"seconds": {name.removeprefix("seconds_"): value for name, value in run.metrics.items()
                          if name.startswith("seconds_")},
              "cached": {"flow": train_info["cached"]}}).fillna({"cached": False}).round(2)

# %%
results_path = run.save()
pd.Series(run.metrics, name=f"{SCALE} scale on {run.as_dict()['device']}").to_frame()

# %% [markdown]
# Every number in this table was computed above and written to `results_path`.
# The paper gives no numbers for this toy; `python -m latentcf reproduce square --check` checks the
# relations that its Sec. 3.2.2 states (see the [reproduction report](../book/reproduction-report.md)).
# Below is this run's verdict on each of them. Relations that a smoke run cannot show at every seed and on
# every CPU are reported, not gated: a smoke run that misses one still passes the check (the reproduction
# report has the table of margins).

# %%
prose.relation_table(run.as_dict())
