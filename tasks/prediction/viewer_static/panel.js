// The legend and opacity panel of both viewer pages: the map's name, each class's swatch and
// name, and a slider that calls setOpacity(0..1).
function panel(config, setOpacity, initial) {
  const slider = document.getElementById("opacity");
  slider.value = Math.round(initial * 100);
  slider.addEventListener("input", (e) => setOpacity(e.target.value / 100));
  document.getElementById("title").textContent = config.name;
  document.getElementById("legend").innerHTML = config.legend.map((c) =>
    `<div><span class="swatch" style="background:${c.color}"></span>${c.value}: ${c.name}</div>`).join("");
}
