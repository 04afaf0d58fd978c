import { render } from "preact";
import { SystemDashboard } from "./features/operator/SystemDashboard";
import "./styles.css";

const wall = new URLSearchParams(window.location.search).get("wall") === "1";
document.documentElement.classList.toggle("wall", wall);
const root = document.getElementById("app");
if (root) render(<SystemDashboard wall={wall} />, root);
