// The legend and opacity panel of both viewer pages, added to the page: the map's name, each
// class's swatch and name, and a slider that calls setOpacity(0..1).
function panel(config, setOpacity, initial) {
  const box = document.createElement("div");
  box.id = "panel";
  const title = document.createElement("b");
  title.textContent = config.name;
  box.append(title);
  for (const c of config.legend) {
    const row = document.createElement("div");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = c.color;
    row.append(swatch, `${c.value}: ${c.name}`);
    box.append(row);
  }
  const label = document.createElement("label");
  const slider = document.createElement("input");
  Object.assign(slider, {type: "range", min: 0, max: 100, value: Math.round(initial * 100)});
  slider.addEventListener("input", (e) => setOpacity(e.target.value / 100));
  label.append("opacity ", slider);
  box.append(label);
  document.body.append(box);
}
