// Small enhancements for the server-rendered pages; every page works without them.

// Ask before destructive actions (forms carrying data-confirm).
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

// Invite chooser: choosing a whole unit covers every unit below it, so grey those rows out.
const chooser = document.querySelector(".chooser");
if (chooser) {
  const rows = [...chooser.querySelectorAll("li")];
  const byId = new Map(rows.map((li) => [li.dataset.id, li]));
  const coveredBy = (li) => {
    for (let p = byId.get(li.dataset.parent); p; p = byId.get(p.dataset.parent)) {
      const whole = p.querySelector('input[name="invited_subtrees"]');
      if (whole && whole.checked) return true;
    }
    return false;
  };
  const refresh = () => {
    for (const li of rows) {
      const covered = coveredBy(li);
      li.classList.toggle("covered", covered);
      for (const box of li.querySelectorAll("input")) box.disabled = covered;
    }
  };
  chooser.addEventListener("change", refresh);
  refresh();
}
