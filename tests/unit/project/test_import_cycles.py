"""No module of meshserve imports, directly or not, a module that imports it
back (grimp, which import-linter installs, builds the graph; it counts
imports under ``TYPE_CHECKING`` too, as the instance/upkeep loop was)."""

import grimp


def test_no_module_is_part_of_an_import_cycle() -> None:
    graph = grimp.build_graph("meshserve")
    cycles = sorted(
        f"{module} -> {imported} -> ... -> {module}"
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    )
    assert cycles == []
