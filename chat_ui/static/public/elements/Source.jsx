import { useState } from "react"
import { ExternalLink } from "lucide-react"

// One cited source under an answer: [n], title, type and services, page and section, the passage, and the link
// that opens the original through the authorised route /documents/<id>#page=<n>.
export default function Source() {
  const [open, setOpen] = useState(false)
  const meta = [props.type, ...(props.services || [])].filter(Boolean).join(" · ")
  const where = [props.page ? "page " + props.page : null, props.section || null].filter(Boolean).join(" · ")
  const long = (props.passage || "").length > 240
  return (
    <div className="cv-card" data-testid="source-card" data-doc-id={props.doc_id}>
      <div className="cv-card-head">
        <span className="cv-num">[{props.n}]</span>
        <div style={{ minWidth: 0, flex: 1 }}>
          <div className="cv-title">{props.title}</div>
          <div className="cv-meta">{meta}{where ? " — " + where : ""}</div>
        </div>
      </div>
      {props.warning ? <div className="cv-warning">⚠ {props.warning}</div> : null}
      {props.passage ? (
        <blockquote className={"cv-passage" + (open || !long ? "" : " cv-clamped")}>{props.passage}</blockquote>
      ) : null}
      <div className="cv-links">
        <a className="cv-open" href={props.url} target="_blank" rel="noopener noreferrer" data-testid="open-source">
          <ExternalLink size={15} aria-hidden="true" />{props.link_label}
        </a>
        {long ? (
          <button type="button" className="cv-linkbtn" onClick={() => setOpen(!open)}>
            {open ? "Réduire l'extrait" : "Lire tout l'extrait"}
          </button>
        ) : null}
      </div>
    </div>
  )
}
