// reelforge gallery: live progress, cancel and prompt notes. Plain JS, no build step, no network
// beyond this server. Every page works without it; this only keeps pages current.
"use strict";
(() => {
  const isDone = (status) => status === "COMPLETED" || status === "FAILED" || status === "CANCELED";
  const field = (root, name) => root.querySelector(`[data-field="${name}"]`);

  // Apply one job event (the server's job detail keys) to a row or the job page's status box.
  function show(root, job) {
    const done = isDone(job.status);
    const pct = Math.round(job.progress * 100);
    root.dataset.status = job.status;
    root.dataset.done = String(done);
    const badge = field(root, "status");
    if (badge) {
      badge.textContent = job.status;
      badge.className = "badge status-" + job.status.toLowerCase();
    }
    const bar = field(root, "progress");
    if (bar) {
      bar.value = job.progress;
      bar.textContent = pct + " %";
      bar.hidden = done;
    }
    const stage = field(root, "stage");
    if (stage) stage.textContent = done ? "" : `${pct} % · ${job.stage}`;
    const failure = field(root, "failure");
    if (failure && job.status === "FAILED" && job.failureMessage) {
      failure.textContent = job.failureMessage;
      failure.hidden = false;
    }
  }

  // The list: one stream for all rows still in progress.
  const list = document.querySelector("[data-live-list]");
  if (list) {
    const rows = new Map();
    list.querySelectorAll('[data-job-id][data-done="false"]').forEach((li) => rows.set(li.dataset.jobId, li));
    if (rows.size) {
      const events = new EventSource("/gallery/events?ids=" + [...rows.keys()].join(","));
      events.addEventListener("job", (ev) => {
        const job = JSON.parse(ev.data);
        const li = rows.get(job.id);
        if (!li) return;
        show(li, job);
        const poster = field(li, "poster");
        if (poster && poster.tagName !== "IMG") {
          if (job.posterUrl) {
            const img = document.createElement("img");
            img.src = job.posterUrl;
            img.alt = "";
            img.dataset.field = "poster";
            poster.replaceWith(img);
          } else {
            poster.textContent = job.status.toLowerCase();
          }
        }
      });
      events.addEventListener("end", () => events.close());
    }
  }

  // The job page: the server's own per-job stream; a finished job is shown by reloading.
  const box = document.querySelector("[data-live-job]");
  if (box && box.dataset.done === "false") {
    const events = new EventSource(`/reelforge/jobs/${box.dataset.jobId}/events`);
    events.addEventListener("job", (ev) => {
      const job = JSON.parse(ev.data);
      show(box, job);
      if (isDone(job.status)) {
        events.close();
        window.location.reload();
      }
    });
  }

  document.querySelectorAll("[data-cancel]").forEach((button) =>
    button.addEventListener("click", async () => {
      const message = field(button.parentElement, "cancel-message");
      button.disabled = true;
      message.textContent = "Canceling…";
      try {
        const reply = await fetch(button.dataset.cancel, { method: "POST", headers: { Accept: "application/json" } });
        if (!reply.ok) {
          const body = await reply.json().catch(() => ({}));
          throw new Error(body.message || reply.statusText);
        }
        message.textContent = "Cancel requested; the job stops at its next frame.";
      } catch (err) {
        message.textContent = "Could not cancel: " + err.message;
        button.disabled = false;
      }
    })
  );

  // The new-job form: show the fields of the chosen kind; prompt notes as you type.
  const form = document.querySelector("form[data-lint]");
  if (form) {
    const task = form.elements.task;
    const out = document.getElementById("lint");
    const syncFields = () =>
      form.querySelectorAll("[data-for-task]").forEach((el) => {
        el.hidden = !el.dataset.forTask.split(" ").includes(task.value);
      });
    let timer = null;
    let asked = 0;
    const render = (warnings, previz) => {
      out.replaceChildren();
      const notes = (previz || []).map((line) => {
        const p = document.createElement("p");
        p.className = "previz-note";
        p.textContent = line;
        return p;
      });
      if (!warnings.length) {
        out.append(...notes);
        return;
      }
      const h = document.createElement("h2");
      h.textContent = "Prompt notes";
      const ul = document.createElement("ul");
      for (const w of warnings) {
        const li = document.createElement("li");
        li.className = "lint-" + w.severity;
        const head = document.createElement("strong");
        head.textContent = `${w.severity} ${w.rule}${w.shot ? ", shot " + w.shot : ""}:`;
        const tip = document.createElement("em");
        tip.textContent = w.suggestion;
        li.append(head, ` ${w.message}. `, tip);
        ul.append(li);
      }
      out.append(h, ul, ...notes);
    };
    const lint = async () => {
      const mine = ++asked;
      const params = new URLSearchParams({
        task: task.value,
        prompt: form.elements.prompt.value,
        shots: form.elements.shots.value,
        duration: form.elements.duration.value,
        model: form.elements.model.value,
      });
      try {
        const reply = await fetch(form.dataset.lint + "?" + params);
        if (reply.ok && mine === asked) {
          const found = await reply.json();
          render(found.warnings, found.previz);
        }
      } catch (err) {
        /* notes are a help, not a gate: the server checks the request on submit */
      }
    };
    const later = () => {
      clearTimeout(timer);
      timer = setTimeout(lint, 250);
    };
    task.addEventListener("change", () => {
      syncFields();
      lint();
    });
    for (const name of ["prompt", "shots", "duration"]) form.elements[name].addEventListener("input", later);
    form.elements.model.addEventListener("change", lint);
    syncFields();

    // The duration field means the video's, the whole video's or each shot's length.
    const hint = document.getElementById("duration-hint");
    if (hint && hint.dataset.hints) {
      const hints = JSON.parse(hint.dataset.hints);
      const syncHint = () => {
        hint.textContent = hints[task.value] || hints.TEXT_VIDEO;
      };
      task.addEventListener("change", syncHint);
      syncHint();
    }

    // An image over the server's upload limit is refused here, before the form (and what was typed) is sent.
    const image = form.elements.image;
    const sizeError = field(form, "image-size");
    if (image && image.dataset.maxBytes && sizeError) {
      const max = Number(image.dataset.maxBytes);
      const checkSize = () => {
        const file = image.files && image.files[0];
        const mb = (n) => (n / 1048576).toFixed(1) + " MB";
        const message = file && file.size > max ? `${file.name} is ${mb(file.size)}; this server takes images up to ${mb(max)}. Choose a smaller image.` : "";
        image.setCustomValidity(message);
        sizeError.textContent = message;
        sizeError.hidden = !message;
        if (message) image.setAttribute("aria-invalid", "true");
        else if (!document.getElementById("image-error")) image.removeAttribute("aria-invalid");
      };
      image.addEventListener("change", checkSize);
      checkSize();
    }
  }

  // After a refused submit: move focus to the error summary, whose items link to their fields.
  const summary = document.querySelector("[data-error-summary]");
  if (summary) {
    summary.focus();
    summary.querySelectorAll('a[href^="#"]').forEach((a) =>
      a.addEventListener("click", (ev) => {
        const target = document.getElementById(a.getAttribute("href").slice(1));
        if (!target || target.closest("[hidden]")) return;
        ev.preventDefault();
        target.focus();
        target.scrollIntoView({ block: "center" });
      })
    );
  }
})();
