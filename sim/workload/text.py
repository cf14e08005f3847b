"""The notebook generator's text: markdown, code sources and text outputs.

Seeded templates on the "gelmanschools" theme (the eight schools example): markdown sections,
import/model/helper code, stdout/stderr streams, pandas-style tables (plain and HTML), results,
an IPython-style traceback, plotting code and a matplotlib warning. Each function draws only
from the ``random.Random`` it is given, so the text is deterministic across machines. Used by
:mod:`sim.workload.generator`.
"""

from __future__ import annotations

import random

# --------------------------------------------------------------------------- text content
# The "gelmanschools" theme: the eight schools example (Gelman et al., BDA3 section 5.5).
_SCHOOLS: tuple[str, ...] = ("Choate", "Deerfield", "Phillips Andover", "Phillips Exeter")
_SCHOOLS += ("Hotchkiss", "Lawrenceville", "St. Paul's", "Mt. Hermon")
_Y = (28, 8, -3, 7, -1, 1, 18, 12)
_SIGMA = (15, 10, 16, 11, 9, 11, 10, 18)
_TITLES: tuple[str, ...] = ("The eight schools problem", "Data", "Complete pooling", "No pooling")
_TITLES += ("Centered hierarchical model", "Sampling", "Divergences and the funnel")
_TITLES += ("Non-centered parameterisation", "Posterior predictive checks", "Shrinkage")
_TITLES += ("Sensitivity to the prior on τ", "Model comparison", "Conclusions")
_SENTENCES = (  # deliberately non-ASCII in places: exercises UTF-8 / UTF-16 offset handling
    r"Each school $j$ reports an estimated effect $y_j$ with a known standard error $\sigma_j$.",
    r"We model the true effects as $\theta_j \sim \mathcal{N}(\mu, \tau^2)$ — partial pooling.",
    r"When $\tau \to 0$ all schools share one effect; as $\tau \to \infty$ they are independent.",
    r"Gelman–Rubin diagnostics ($\hat{R} ≈ 1.00$) and bulk ESS look healthy now.",  # noqa: RUF001
    "The centered model produces divergent transitions near the neck of Neal’s funnel 🌪️.",  # noqa: RUF001
    "Shrinkage pulls the noisiest estimates (Choate, Mt. Hermon) hardest towards μ.",
    "See *Bayesian Data Analysis*, §5.5, for the original SAT coaching experiments.",
    "The naïve pooled estimate ignores between-school variation, so its interval is too narrow.",
    "Posterior intervals are 94 % highest-density intervals (HDI), ArviZ’s default.",  # noqa: RUF001
    "在分层模型中，τ 控制着各学校效应之间的收缩程度。",  # noqa: RUF001
    "Ограничение τ ≥ 0 задаётся полу-Коши априорным распределением.",
    "We draw 4 chains × 2 000 draws after 1 000 tuning steps; `target_accept` helps too.",  # noqa: RUF001
)
_MATH = (
    "$$\np(\\mu, \\tau \\mid y) \\propto p(\\mu, \\tau) \\prod_{j=1}^{8} "
    "\\mathcal{N}\\left(y_j \\mid \\mu, \\sigma_j^2 + \\tau^2\\right)\n$$"
)


def _markdown(rng: random.Random, section: int) -> str:
    title = _TITLES[section % len(_TITLES)]
    if section >= len(_TITLES):
        title += f" (part {section // len(_TITLES) + 1})"
    parts = [("# " if section == 0 else rng.choice(("## ", "## ", "### "))) + title]
    for _ in range(rng.randrange(1, 4)):
        parts.append(" ".join(rng.choice(_SENTENCES) for _ in range(rng.randrange(1, 4))))
    extra = rng.random()
    if extra < 0.3:
        items = [rng.choice(_SENTENCES) for _ in range(rng.randrange(2, 5))]
        bullet = "{n}. " if extra < 0.1 else "- "
        parts.append("\n".join(bullet.format(n=i + 1) + s for i, s in enumerate(items)))
    elif extra < 0.5:
        parts.append(_MATH)
    elif extra < 0.62:
        rows = [f"| {s} | {y} | {e} |" for s, y, e in zip(_SCHOOLS, _Y, _SIGMA, strict=True)]
        parts.append("\n".join(["| school | $y_j$ | $\\sigma_j$ |", "|---|---:|---:|", *rows]))
    elif extra < 0.72:
        parts.append("> " + rng.choice(_SENTENCES))
    return "\n\n".join(parts)


def _f(rng: random.Random, lo: float, hi: float, digits: int = 2) -> str:
    return f"{lo + (hi - lo) * rng.random():.{digits}f}"


def _imports_source(rng: random.Random) -> str:
    return (
        "import arviz as az\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
        "import pandas as pd\nimport pymc as pm\n\n%matplotlib inline\n"
        f'az.style.use("arviz-darkgrid")\nRANDOM_SEED = {rng.randrange(10_000)}\n'
        "rng = np.random.default_rng(RANDOM_SEED)"
    )


def _silent_source(rng: random.Random) -> str:
    pick = rng.randrange(4)
    if pick == 0:
        names = ", ".join(f'"{s}"' for s in _SCHOOLS)
        return (
            f"schools = np.array([{names}])\ny = np.array({list(_Y)}, dtype=float)\n"
            f"sigma = np.array({list(_SIGMA)}, dtype=float)\nJ = len(schools)"
        )
    if pick == 1:
        return (
            'with pm.Model(coords={"school": schools}) as model:\n'
            f'    mu = pm.Normal("mu", mu=0.0, sigma={_f(rng, 2, 10, 1)})\n'
            f'    tau = pm.HalfCauchy("tau", beta={_f(rng, 1, 10, 1)})\n'
            '    theta_tilde = pm.Normal("theta_tilde", mu=0.0, sigma=1.0, dims="school")\n'
            '    theta = pm.Deterministic("theta", mu + tau * theta_tilde, dims="school")\n'
            '    pm.Normal("obs", mu=theta, sigma=sigma, observed=y, dims="school")'
        )
    if pick == 2:
        return (
            'def shrinkage(idata, var_name: str = "theta") -> pd.Series:\n'
            '    """Fraction of the way each school estimate moves towards the grand mean."""\n'
            '    post = idata.posterior[var_name].mean(("chain", "draw")).values\n'
            '    grand = idata.posterior["mu"].mean().item()\n'
            '    return pd.Series((y - post) / (y - grand), index=schools, name="shrinkage")'
        )
    return (
        'df = pd.DataFrame({"school": schools, "y": y, "sigma": sigma})\n'
        f'df["z"] = (df["y"] - df["y"].mean()) / {_f(rng, 5, 15, 1)}\n'
        'df = df.set_index("school")'
    )


def _stream_cell(rng: random.Random) -> tuple[str, str, str]:
    """(source, stream name, text)."""
    pick = rng.randrange(3)
    if pick == 0:
        fmt = "{school:<17} {effect:+6.1f} ± {se:4.1f}"
        body = "".join(
            fmt.format(school=s, effect=y, se=e) + "\n"
            for s, y, e in zip(_SCHOOLS, _Y, _SIGMA, strict=True)
        )
        return (
            f'for school, effect, se in zip(schools, y, sigma):\n    print(f"{fmt}")',
            "stdout",
            body,
        )
    if pick == 1:
        draws, tune = rng.choice((1000, 2000, 4000)), rng.choice((500, 1000, 2000))
        src = (
            f"with model:\n    idata = pm.sample({draws}, tune={tune}, "
            f"target_accept={_f(rng, 0.8, 0.99)}, random_seed=rng)"
        )
        body = (
            "Auto-assigning NUTS sampler...\nInitializing NUTS using jitter+adapt_diag...\n"
            "Multiprocess sampling (4 chains in 4 jobs)\nNUTS: [mu, tau, theta_tilde]\n"
            f"Sampling 4 chains for {tune:_} tune and {draws:_} draw iterations "
            f"({4 * tune:_} + {4 * draws:_} draws total) took {rng.randrange(2, 30)} seconds.\n"
        )
        if rng.random() < 0.5:
            body += (
                f"There were {rng.randrange(1, 60)} divergences after tuning. "
                "Increase `target_accept` or reparameterize.\n"
            )
        return src, "stderr", body
    lines = [f"divergences: {rng.randrange(0, 40)}", f"max r_hat: {_f(rng, 1.0, 1.02, 3)}"]
    lines += [f"ess_bulk[{v}]: {rng.randrange(400, 9000)}" for v in ("mu", "tau")]
    src = (
        'print("divergences:", int(idata.sample_stats["diverging"].sum()))\n'
        'print("max r_hat:", float(az.rhat(idata).to_array().max()))\n'
        'for v in ("mu", "tau"):\n    print(f"ess_bulk[{v}]:", int(az.ess(idata)[v]))'
    )
    return src, "stdout", "\n".join(lines) + "\n"


_HTML_STYLE = (
    "<div>\n<style scoped>\n    .dataframe tbody tr th:only-of-type {\n"
    "        vertical-align: middle;\n    }\n\n    .dataframe tbody tr th {\n"
    "        vertical-align: top;\n    }\n\n    .dataframe thead th {\n"
    "        text-align: right;\n    }\n</style>\n"
)


def _frame(index: list[str], columns: list[str], rows: list[list[str]]) -> tuple[str, str]:
    """(text/plain, text/html) renderings of a small table, in pandas' style."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    iw = max(len(s) for s in index)

    def plain_row(head: str, cells: list[str]) -> str:
        return f"{head:<{iw}}" + "".join(f"  {v:>{w}}" for v, w in zip(cells, widths, strict=True))

    plain = [plain_row("", columns)] + [plain_row(i, r) for i, r in zip(index, rows, strict=True)]
    head = "".join(f"      <th>{c}</th>\n" for c in columns)
    body = "".join(
        f"    <tr>\n      <th>{i}</th>\n"
        + "".join(f"      <td>{v}</td>\n" for v in r)
        + "    </tr>\n"
        for i, r in zip(index, rows, strict=True)
    )
    html = (
        f'{_HTML_STYLE}<table border="1" class="dataframe">\n  <thead>\n'
        f'    <tr style="text-align: right;">\n      <th></th>\n{head}    </tr>\n  </thead>\n'
        f"  <tbody>\n{body}  </tbody>\n</table>\n</div>"
    )
    return "\n".join(plain), html


def _table_cell(rng: random.Random) -> tuple[str, str, str]:
    """(source, text/plain, text/html)."""
    if rng.random() < 0.6:
        index = ["mu", "tau"] + [f"theta[{s}]" for s in _SCHOOLS]
        columns = ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "r_hat"]
        rows = []
        for _ in index:
            m, sd = 4.4 + 6 * (rng.random() - 0.5), 3.0 + 3 * rng.random()
            mcse, ess, rhat = _f(rng, 0.02, 0.2), rng.randrange(800, 9000), _f(rng, 1.0, 1.01)
            row = [f"{m:.2f}", f"{sd:.2f}", f"{m - 1.9 * sd:.2f}", f"{m + 1.9 * sd:.2f}"]
            rows.append([*row, mcse, f"{ess}.0", rhat])
        hdi = _f(rng, 0.89, 0.95)
        src = f'az.summary(idata, var_names=["mu", "tau", "theta"], hdi_prob={hdi})'
        return (src, *_frame(index, columns, rows))
    k = rng.randrange(1, 4)
    rows = [
        [f"{y * k:.1f}", f"{e:.1f}", f"{y * k / e:.3f}"] for y, e in zip(_Y, _SIGMA, strict=True)
    ]
    src = f'df.assign(y=df["y"] * {k}, t=df["y"] * {k} / df["sigma"])[["y", "sigma", "t"]]'
    return (src, *_frame(list(_SCHOOLS), ["y", "sigma", "t"], rows))


def _result_cell(rng: random.Random) -> tuple[str, str]:
    """(source, text/plain)."""
    pick = rng.randrange(3)
    if pick == 0:
        return 'idata.posterior["tau"].mean().item()', repr(rng.random() * 6 + 1)
    if pick == 1:
        vals = ", ".join(f"{rng.random() * 10:.8f}" for _ in range(8))
        return 'idata.posterior["theta"].mean(("chain", "draw")).values', f"array([{vals}])"
    ratios = ", ".join(f"{y / e:.2f}" for y, e in zip(_Y, _SIGMA, strict=True))
    plain = f"({sum(_Y) / 8}, {_f(rng, 10.0, 10.5, 12)}, array([{ratios}]))"
    return "y.mean(), y.std(ddof=1), (y / sigma).round(2)", plain


def _error_cell(rng: random.Random, count: int) -> tuple[str, str, str, list[str]]:
    """(source, ename, evalue, traceback) of an IPython-style KeyError."""
    school = rng.choice(("Exeter", "Andover", "Groton"))
    var = f"theta_{school.lower()}"
    src = f'{var} = idata.posterior["theta"].sel(school="{school}")\n{var}.mean()'
    red, green, grey, off = "\x1b[0;31m", "\x1b[0;32m", "\x1b[38;5;241m", "\x1b[0m"
    traceback = [
        red + "-" * 75 + off,
        f"{red}KeyError{off}" + " " * 34 + "Traceback (most recent call last)",
        f"Cell {green}In[{count}], line 1{off}\n{green}----> 1{off} {var} {grey}={off} idata"
        f'{grey}.{off}posterior["theta"]{grey}.{off}sel(school{grey}={off}"{school}")\n',
        f"File {green}/opt/conda/lib/python3.11/site-packages/xarray/core/indexes.py:773{off}, "
        f"in \x1b[0;36mPandasIndex.sel\x1b[0;34m(self, labels, method, tolerance){off}\n"
        f"\x1b[1;32m    771{off}     raise KeyError(label_value)\n",
        f"{red}KeyError{off}: \"'{school}'\"",
    ]
    return src, "KeyError", f"\"'{school}'\"", traceback


_PLOT_SNIPPETS = {
    "line": "x = np.linspace(0, 1, 200)\nfor k in range({n}):\n"
    '    ax.plot(x, np.sin({f} * x + k) / (1 + {d} * x**2), label=f"k={{k}}")\nax.legend()',
    "scatter": 'ax.scatter(df["sigma"], df["y"], alpha={a})\n'
    'ax.axline((0, {b}), slope={s}, color="k")',
    "hist": 'ax.hist(idata.posterior["mu"].values.ravel(), bins={n}, alpha={a})\n'
    'ax.set_xlabel("μ")',
    "errorbar": 'ax.errorbar(schools, y, yerr=sigma, fmt="o", capsize={n})\n'
    'ax.axhline(y.mean(), ls="--", color="{c}")',
}


def _plot_source(rng: random.Random, kinds: list[str]) -> str:
    blocks = []
    for kind in kinds:
        params = {"n": rng.randrange(2, 30), "f": _f(rng, 1, 9), "d": _f(rng, 0, 8)}
        params |= {"a": _f(rng, 0.3, 0.9), "b": _f(rng, -5, 5), "s": _f(rng, -1, 1)}
        params["c"] = rng.choice(("gray", "k", "C3"))
        snippet = _PLOT_SNIPPETS[kind].format(**params)
        blocks.append(f'fig, ax = plt.subplots()\n{snippet}\nax.set_title("{rng.choice(_TITLES)}")')
    return "\n\n".join(blocks)


def _warning_text(rng: random.Random) -> str:
    path = "/opt/conda/lib/python3.11/site-packages/arviz/plots/backends/matplotlib/distplot.py"
    return (
        f"{path}:{rng.randrange(100, 900)}: UserWarning: The figure layout has changed to tight\n"
        "  self._figure.tight_layout(*args, **kwargs)\n"
    )
