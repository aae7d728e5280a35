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
# # Diffeomorphic counterfactuals on a helix
#
# A classifier only ever sees data that lie on a thin manifold, here a helix in $\mathbb{R}^3$.
# Ask it "what would have to change for you to say *upper half* instead of *lower half*?" and plain
# gradient ascent on the input answers with a point far off the helix: an adversarial example,
# a direction the data never take.
# Dombrowski et al. show that the same ascent carried out in the latent space of a normalizing flow
# gives a *counterfactual* that stays on the manifold.
# This chapter rebuilds their toy experiment (Sec. 4.1.1, 4.1.2, App. B.1, Fig. 6, 7 left, 15, 16)
# from scratch, measures the distance of both kinds of results to the helix,
# and looks at the flow's Jacobian to see *why* the latent search stays on the manifold.
#
# What the chapter introduces into `latentcf`:
# `registry.start_run` and `results.Run` (seeded, recorded, timed runs), `settings` (a chapter's settings
# as stage-prefixed fields and the cache keys made from them), `runtime.generator` (named random streams),
# `flows.coupling_flow` (a RealNVP with fused coupling networks), `training.fit` (the one training loop),
# `cache.cached_model`, `search.gradient_ascent` (batched ascent with per-sample stopping),
# `geometry.batched_jacobian` and `helix.distance_to_helix`.

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
# `start_run` checks the parameters, seeds Python, NumPy and torch, picks the device
# (an unavailable one is an error, never a silent fallback) and loads the settings of the scale:
# `helix.PAPER`, the paper's sizes and step counts, at `"paper"`, and `helix.SMOKE`, a small flow
# trained briefly, at `"smoke"` (the module says why each smoke value differs).
# Every settings field starts with the *stage* it belongs to (`flow_`, `classifier_`, `search_`, `eval_`):
# a trained model is cached under the fields of the stages it depends on
# (`core.settings.stage_settings(settings, "data", "flow", seed=...)` for the flow), and
# `run.stage("flow")` records the stage's wall time as `seconds_flow`.
# Each use of randomness in training draws from its own named stream
# (`core.runtime.generator(seed, "flow/batches")`), so adding a stream never shifts another.

# %%
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown

from latentcf.book import prose
from latentcf.chapters import helix
from latentcf.chapters.registry import start_run
from latentcf.core import plotting
from latentcf.core.claims import published_values
from latentcf.core.settings import settings_table

run = start_run("helix", SCALE, SEED, DEVICE)
settings, device = run.settings, run.device
data = helix.load_data(settings, device)
published = published_values("helix")
plotting.use_style()
settings_table(helix.SMOKE, helix.PAPER)

# %% [markdown]
# ## The data: a helix cut in two
#
# The data live on a one-dimensional curve in three dimensions,
#
# $$ x = h(t) = (\sin t,\ \cos t,\ t), \qquad t \sim \mathcal{U}(-4, 4), $$
#
# and the label says whether a point lies on the upper half ($x_3 > 0$) or the lower one.
# Every training step draws a fresh batch from this distribution, as the official notebook
# (`toy_example.ipynb` in [annahdo/counterfactuals](https://github.com/annahdo/counterfactuals)) does:
# `helix.load_data` returns the distribution itself, and the training functions sample from it.

# %%
x_data = data.sample(1500, run.generator)
plotting.figure3d([plotting.scatter3d(x_data[helix.helix_labels(x_data) == c], f"class {c}",
                                      plotting.CLASS_COLORS[c]) for c in (0, 1)],
                  "Training distribution: the two halves of the helix")

# %% [markdown]
# ## A normalizing flow learns the helix
#
# A flow is an invertible map $g: \mathcal{Z} \to \mathcal{X}$ pushing a standard normal forward.
# Its likelihood follows from the change of variables,
#
# $$ \log p(x) = \log \mathcal{N}\big(g^{-1}(x); 0, I\big)
#    + \log \left| \det \frac{\partial g^{-1}(x)}{\partial x} \right|. $$
#
# A RealNVP affine coupling keeps a subset $h_k$ of coordinates and moves the others by
# $h_m \mapsto h_m \odot e^{s(h_k)} + t(h_k)$; its Jacobian is triangular, so the log-determinant is
# just $\sum s(h_k)$.
# The toy flow stacks 12 couplings with the official mask pattern (each coordinate is transformed
# conditioned on the other two, then two conditioned on one, twice over), every scale and shift
# network an MLP with two hidden layers and a `tanh` on the log-scale.
# As in the official notebook, the generator applies the affine map as written above: it scales and then
# shifts in data units, so the inverse first subtracts $t$ and then divides by $e^{s}$.
# `flows.CouplingFlow` evaluates the two networks of a layer as one batched matrix product, which
# halves the operations per layer; we train it by maximum likelihood with Adam.
# Every 100 steps the loop measures the negative log-likelihood of a fixed held-out set of helix points
# and, at the end, keeps the weights that scored best there (`training.Validation`), as the official
# notebook saves its best model.

# %%
with run.stage("flow"):
    flow, flow_info = helix.train_flow(data, settings, SEED, device)
with run.stage("classifier"):
    classifier, classifier_info = helix.train_classifier(data, settings, SEED, device)
x_eval = data.sample(settings.eval_n, run.generator).to(device)
with torch.no_grad():
    flow_nll = -flow.log_prob(x_eval).mean().item()
run.record(flow_test_nll=flow_nll, flow_parameters=sum(p.numel() for p in flow.parameters()),
           flow_best_step=flow_info["best_step"])
plotting.loss_curves({"flow: negative log-likelihood": flow_info["loss"],
                      "classifier: cross-entropy": classifier_info["loss"]},
                     validations={"flow: negative log-likelihood": flow_info});

# %% [markdown]
# The training loss of single batches is noisy, and where it jumps up, as it can every few hundred steps,
# it takes many steps to recover.
# Where the held-out dots follow the same ups and downs, the last step is a matter of luck, and keeping the
# best held-out weights (the dashed line, recorded as `flow_best_step`) is what makes the run repeatable.
# The flow's negative log-likelihood on fresh helix points is recorded as `flow_test_nll`.
# It can go far below zero: the density of a curve in $\mathbb{R}^3$ is unbounded, and the flow
# concentrates its mass in a thin tube around the helix.
# Below, left to right: base samples $z$, data samples $x$ and flow samples $g(z)$ (Fig. 15).

# %%
z_base = torch.randn(1500, 3, generator=run.generator)
x_flow = helix.sample_flow(flow, 1500, device)
plotting.panels3d({"latent z ~ N(0, I)": [plotting.scatter3d(z_base, "z", plotting.ACCENT)],
                   "data x": [plotting.scatter3d(x_data, "x", plotting.CLASS_COLORS[1])],
                   "flow samples g(z)": [plotting.scatter3d(x_flow, "g(z)", plotting.SEARCH_COLORS["z"])]})

# %% [markdown]
# ## The classifier
#
# A 3-256-1 MLP with a sigmoid output, trained with binary cross-entropy on fresh batches.
# Its accuracy on the helix is in the titles of the panels below; what it does *off* the helix was never
# constrained by any data.

# %%
accuracy_data = helix.classifier_accuracy(classifier, x_eval)
accuracy_flow = helix.classifier_accuracy(classifier, x_flow[: settings.eval_n])
run.record(classifier_accuracy=accuracy_data, classifier_accuracy_generated=accuracy_flow)
with torch.no_grad():
    predicted_flow = (classifier(x_flow) > 0.5).long().cpu()
    predicted_data = (classifier(x_data.to(device)) > 0.5).long().cpu()
plotting.panels3d({
    f"data (accuracy {accuracy_data:.3f})": [plotting.scatter3d(x_data[predicted_data == c], f"f(x) class {c}",
                                                                plotting.CLASS_COLORS[c]) for c in (0, 1)],
    f"generated (accuracy {accuracy_flow:.3f})": [plotting.scatter3d(x_flow[predicted_flow == c], f"f(g(z)) class {c}",
                                                                     plotting.CLASS_COLORS[c]) for c in (0, 1)]})

# %% [markdown]
# ## Gradient ascent in X and in Z
#
# Both searches follow the official toy code: with $T = 0.9$ if $f(x) < 0.5$ and $T = 0.1$
# otherwise, minimise the squared error $(f(x) - T)^2$ with Adam and stop as soon as $f$ reaches $T$.
#
# * **In X** the optimised variable is the point $x$ itself.
# * **In Z** it is $z$, initialised at $g^{-1}(x)$, and the classifier sees $x = g(z)$.
#
# `search.gradient_ascent` optimises *all* starts at once.
# Each sample stops on its own: a stopped sample is masked out of the loss, and its Adam update is
# undone, so every sample follows exactly the path it would follow alone.

# %% [markdown]
# This is the library's own code that ran both searches of this chapter, `gradient_ascent` from
# `latentcf/methods/search.py`:
#
# ```{literalinclude} ../lib/latentcf/methods/search.py
# :language: python
# :pyobject: gradient_ascent
# ```

# %% [markdown]
# First the paper's illustrative start, the helix point at $t = 2$ (Fig. 6), together with a few
# random ones, with their trajectories recorded.

# %%
x_show = torch.cat([helix.helix_point(torch.tensor([2.0])),
                    data.sample(5, run.generator)]).to(device)
show_x = helix.search_in_x(x_show, classifier, settings, record_trajectory=True)
show_z = helix.search_in_z(x_show, classifier, flow, settings, record_trajectory=True)
traces = [plotting.scatter3d(x_flow[predicted_flow == c][:300], f"g(z), f = class {c}",
                             plotting.CLASS_COLORS[c], opacity=0.3) for c in (0, 1)]
for i in range(len(x_show)):
    traces += [plotting.line3d(show_x.trajectory[:, i], "ascent in X", plotting.SEARCH_COLORS["x"],
                               show_legend=i == 0, group="x"),
               plotting.line3d(show_z.trajectory[:, i], "ascent in Z", plotting.SEARCH_COLORS["z"],
                               show_legend=i == 0, group="z")]
traces.append(plotting.scatter3d(x_show, "start x", plotting.ACCENT, size=5, opacity=1.0))
plotting.figure3d(traces, "Trajectories: X leaves the helix, Z slides along it")

# %%
pd.DataFrame({"search": ["X", "Z"],
              "steps": [show_x.steps[0].item(), show_z.steps[0].item()],
              "final point": [np.round(r.x[0].cpu().numpy(), 3) for r in (show_x, show_z)],
              "f(final)": [classifier(r.x[:1]).item() for r in (show_x, show_z)],
              "distance to helix": [helix.distance_to_helix(r.x[:1]).item() for r in (show_x, show_z)]})

# %% [markdown]
# ## How far from the manifold? Distance to the helix
#
# The official code measures the distance with a local constrained solver.
# We compute it exactly instead:
#
# $$ d(p)^2 = \min_t\ (p_1 - \sin t)^2 + (p_2 - \cos t)^2 + (p_3 - t)^2 . $$
#
# At a minimiser $t - p_3 = p_1 \cos t - p_2 \sin t$, and the right side is at most
# $\rho = \lVert (p_1, p_2) \rVert$, so the global minimum lies in $[p_3 - \rho, p_3 + \rho]$:
# `helix.distance_to_helix` searches a dense grid there and refines with Newton steps,
# vectorised over points (the helix is treated as infinite, as in the official code).
# A quick check on points with known distance: a point at radius $R$ at the height of $h(t)$
# is $|1 - R|$ away.

# %%
t_check = torch.linspace(-3.0, 3.0, 7)
radius = torch.linspace(0.0, 3.0, 7)
p_check = torch.stack([radius * torch.sin(t_check), radius * torch.cos(t_check), t_check], dim=1)
pd.DataFrame({"R": radius, "|1 - R|": (1 - radius).abs(), "distance_to_helix": helix.distance_to_helix(p_check)})

# %% [markdown]
# ## Many optimisations
#
# Now the statistics: `settings.search_n` starts drawn from the helix, each searched in X and in Z
# (learning rate and step limit as in the official notebook), all in one batch per search.
# A search succeeds when $f$ reaches its target; the distance is measured for successful ones.

# %%
x_starts = data.sample(settings.search_n, run.generator).to(device)
with run.stage("search_x"):
    result_x = helix.search_in_x(x_starts, classifier, settings)
with run.stage("search_z"):
    result_z = helix.search_in_z(x_starts, classifier, flow, settings)
distance_x = helix.distance_to_helix(result_x.x[result_x.success])
distance_z = helix.distance_to_helix(result_z.x[result_z.success])
run.record(n_optimizations=settings.search_n,
           success_rate_x=result_x.success.float().mean(), success_rate_z=result_z.success.float().mean(),
           median_distance_x=distance_x.median(), median_distance_z=distance_z.median(),
           median_steps_x=result_x.steps.float().median(), median_steps_z=result_z.steps.float().median())
pd.DataFrame({"search": ["X", "Z"],
              "success rate": [run.metrics["success_rate_x"], run.metrics["success_rate_z"]],
              "median distance": [run.metrics["median_distance_x"], run.metrics["median_distance_z"]],
              "median steps": [run.metrics["median_steps_x"], run.metrics["median_steps_z"]],
              "paper: median distance": [published["median_distance_x"], published["median_distance_z"]]})

# %%
plotting.boxplot({"in X": distance_x, "in Z": distance_z}, ylabel="distance to helix",
                 xlabel="gradient ascent", log=True);

# %% [markdown]
# The box plot is the paper's Fig. 16, here on a log axis, and the paper's point is this:
# ascent in X reaches the target by walking off the helix, into a region where the classifier was
# never trained; ascent in Z reaches it while staying on the learned manifold,
# at a distance set only by how thin the flow's tube around the helix is.
# What this run's medians say:

# %%
distance_ratio = (distance_z.median() / distance_x.median()).item()
Markdown(f"In this run the searches in Z end a median {prose.number(run.metrics['median_distance_z'])} from the "
         f"helix and those in X {prose.number(run.metrics['median_distance_x'])}: the searches in Z end "
         + prose.ordered(distance_ratio, 1.0, "farther from the helix than", "closer to the helix than",
                         "as close to the helix as")
         + f" those in X, at {prose.number(distance_ratio, 2)} times their distance. The paper's relation asks for "
         f"less than a tenth.")

# %% [markdown]
# The distance in Z is set by the flow's fit: a flow taken at a bad moment of its training (the last step
# instead of the best held-out one) leaves a wider tube, and the latent searches end further from the helix.
#
# Does every latent search succeed, and where do the failed ones go, if any?
# The table compares the latent norm $\lVert z \rVert$ and the distance to the helix of the final points.

# %%
outcome = {"succeeded": result_z.success, "failed": ~result_z.success}
pd.DataFrame({name: {"searches": int(mask.sum()),
                     "median |z| at the end": result_z.v[mask].norm(dim=1).median().item() if mask.any() else np.nan,
                     "median distance to helix": helix.distance_to_helix(result_z.x[mask]).median().item()
                     if mask.any() else np.nan}
              for name, mask in outcome.items()}).T

# %% [markdown]
# The paper reports that all its searches succeeded.
# Where a latent search fails (some did in earlier runs of this book, whose flows were the last training
# step rather than the best held-out one), look at its $\lVert z \rVert$: a search that has run away ends
# far outside the region a standard normal ever visits ($\lVert z \rVert \lesssim 4$ in three dimensions),
# where the flow was never trained and $g(z)$ is no longer on the helix, while $f$ creeps towards a
# plateau just short of the target.
# The latent search stays on the manifold only where the flow has seen data.

# %% [markdown]
# ## Why Z stays on the manifold: the tangent space
#
# A step $\Delta z = \eta\, \nabla_z f(g(z))$ moves $x$ by, to first order,
#
# $$ \Delta x = J \Delta z = \eta\, J J^\top \nabla_x f, \qquad J = \frac{\partial g}{\partial z}, $$
#
# so the gradient in X is filtered by the *inverse induced metric* $J J^\top = U \Sigma^2 U^\top$
# (Eq. 15 and 23 of the paper).
# If the flow has learned the helix, one eigenvalue $\sigma_1^2$ is large, with its eigenvector along the
# helix, and the other two are tiny: every latent step is squeezed onto the tangent of the manifold.
# We compute $J$ with autograd at points of the helix, take its SVD and draw, at each point, the
# parallelepiped spanned by the eigenvectors $u_i$ scaled by their eigenvalues $\sigma_i^2$ (Fig. 7 left;
# all edges share one display scale so the boxes fit the plot).

# %%
t_tangent = torch.linspace(-3.5, 3.5, settings.eval_tangent_points)
tangent = helix.tangent_space(flow, t_tangent)
run.record(tangent_singular_ratio=tangent.singular_ratio.mean(), tangent_alignment=tangent.alignment.mean())
display_scale = 0.6 / tangent.eigenvalues[:, 0].max()
edges = display_scale * (tangent.eigenvectors * tangent.eigenvalues[:, None, :])  # column j: sigma_j^2 u_j, scaled
boxes = [plotting.parallelepiped(tangent.x[i] - 0.5 * edges[i].sum(1), edges[i].T,
                                 plotting.SEARCH_COLORS["z"], "J J^T eigenvectors", show_legend=i == 0)
         for i in range(len(t_tangent))]
curve = helix.helix_point(torch.linspace(-4, 4, 400))
plotting.figure3d([plotting.line3d(curve, "helix", plotting.CLASS_COLORS[0], width=2), *boxes],
                  "Eigenvectors of J J^T, scaled by their eigenvalues")

# %%
pd.DataFrame({"t": t_tangent, "sigma_1^2": tangent.eigenvalues[:, 0], "sigma_2^2": tangent.eigenvalues[:, 1],
              "sigma_3^2": tangent.eigenvalues[:, 2], "sigma_min/sigma_max": tangent.singular_ratio,
              "|cos(u_1, tangent)|": tangent.alignment}).round(4)

# %% [markdown]
# Where the flow has learned the helix, the boxes collapse to segments along it: the smallest singular
# value is a small fraction of the largest and the dominant eigenvector is parallel to the helix tangent
# $(\cos t, -\sin t, 1)/\sqrt{2}$. That is the mechanism behind the box plot above.
# This run's averages over the points, against the thresholds of the paper's relations:

# %%
singular_ratio, alignment = tangent.singular_ratio.mean().item(), tangent.alignment.mean().item()
collapsed = singular_ratio < 0.1 and alignment > 0.9
Markdown(f"`tangent_singular_ratio` = {prose.number(singular_ratio)}, {prose.ordered(singular_ratio, 0.1)} 0.1, and "
         f"`tangent_alignment` = {prose.number(alignment, 4)}, {prose.ordered(alignment, 0.9)} 0.9: in this run the "
         + ("boxes collapse to segments along the helix." if collapsed
            else "boxes do not collapse to segments along the helix everywhere."))

# %% [markdown]
# ## Timings and the recorded results
#
# Times on this run's device, recorded by `run.stage` as `seconds_<stage>`; trained models come from the
# cache when the same settings were trained before (`cached` below), and then their stage is the time it
# took to load them, so a re-run only pays for the searches.
# At paper scale on a 2-core CPU, flow training is most of the chapter's time: 5,000 Adam steps through
# 24 MLPs with two 256-wide hidden layers, about 4.7 GFLOP a step, dominated by the 256 x 256 matrix products.
# Each of the 12 layers needs three of them per step (one forward, two backward), and a profile shows them
# running close to the CPU's peak arithmetic rate while taking about two thirds of the step: that part is a
# floor which no reorganisation of the code removes. Evaluating each layer's two MLPs as one batched product
# removes half of the small operations around them. Three more changes leave every number unchanged (the
# trained flow is identical bit for bit) and shorten each step: the activations applied in place, the output
# layer's weight gradient computed as a product of a shape the CPU's BLAS handles faster
# (`models.flows._NarrowOutput`), and AdamW's multi-tensor form in `core.training.fit`. A fourth change is
# not in the arithmetic at all: every step creates fresh megabyte-sized activations and gradients, and by
# default the C library hands such blocks back to the system when they are freed, so each one faults its
# memory pages in again; `core.runtime.reuse_host_memory` (called when a run opens its device) keeps them.
# The validation adds a forward pass over the 10,000 held-out points every 100 steps, the work of about
# seven training steps (a forward pass is about a third of a step), so some 7% of the training time.
# The searches in Z differentiate the latent only, not the flow's weights (`search.gradient_ascent`), which
# spares a third of every backward pass through the flow. The paper-scale runs and their times are listed in
# `results/paper/README.md`; the [reproduction report](../book/reproduction-report.md) adds paper-scale runs
# at other seeds, which show whether every ascent in Z reaching its target holds beyond one trained flow.

# %%
pd.DataFrame({"stage": ["flow training", "classifier training", "ascent in X", "ascent in Z"],
              "seconds": [run.metrics[f"seconds_{stage}"] for stage in ("flow", "classifier", "search_x", "search_z")],
              "cached": [flow_info["cached"], classifier_info["cached"], False, False]}).round(2)

# %%
results_path = run.save()
pd.Series(run.metrics, name=f"{SCALE} scale on {run.as_dict()['device']}").to_frame()

# %% [markdown]
# Every number in this table was computed above and written to `results_path`;
# `python -m latentcf reproduce helix --check` compares them with the paper
# (see the [reproduction report](../book/reproduction-report.md)).
# Below is this run's verdict on each relation the paper states. Relations that a smoke run cannot show at
# every seed and on every CPU are reported, not gated: a smoke run that misses one still passes the check
# (the reproduction report has the table of margins).

# %%
prose.relation_table(run.as_dict())
